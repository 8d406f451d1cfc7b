"""The workflow's callbacks: best checkpoint, per-group LR decay and early stopping from one monitor; NaN guard;
atomic backups that refuse a foreign configuration."""

import json
import math

import keras
import numpy as np
import pytest

from keras_mmsa.training.callbacks import NaNGuard, PlateauMonitor, RunBackup


class FakeModel:
    def __init__(self):
        self.stage_optimizers = {
            "bert": keras.optimizers.Adam(1e-3),
            "main": keras.optimizers.Adam(1e-2),
            "q": keras.optimizers.Adam(5e-3),
        }
        self.saved = []
        self.stop_training = False
        self.epoch = None

    def lr_decay_groups(self):  # what PlateauMonitor decays when lr_groups is None
        return ("bert", "main")

    def save_weights(self, path, overwrite=True):
        self.saved.append(self.epoch)


def _run(monitor, losses):
    model = FakeModel()
    monitor.set_model(model)
    lrs = []
    for epoch, loss in enumerate(losses):
        model.epoch = epoch
        monitor.on_epoch_end(epoch, {"val_loss": loss})
        lrs.append({g: float(np.array(o.learning_rate)) for g, o in model.stage_optimizers.items()})
        if model.stop_training:
            break
    return model, lrs


def test_checkpoint_only_on_improvement_lr_decay_and_early_stop(tmp_path):
    monitor = PlateauMonitor(tmp_path / "best.weights.h5", patience=4, lr_patience=2, lr_factor=0.5)
    model, lrs = _run(monitor, [1.0, 0.8, 0.9, 0.85, 0.81, 0.95, 0.7, 0.9])
    assert model.saved == [0, 1]  # epochs 0 and 1 improved; then 4 epochs without improvement
    assert model.stop_training and len(lrs) == 6
    assert monitor.best == 0.8 and monitor.best_epoch == 1
    # two decays (after 2 and 4 epochs without improvement) of the bert and main groups; q untouched
    assert np.isclose(lrs[-1]["main"], 1e-2 * 0.25) and np.isclose(lrs[-1]["bert"], 1e-3 * 0.25)
    assert np.isclose(lrs[-1]["q"], 5e-3)
    assert np.isclose(lrs[2]["main"], 1e-2) and np.isclose(lrs[3]["main"], 5e-3)


def test_state_roundtrip_continues_the_counters(tmp_path):
    first = PlateauMonitor(tmp_path / "b.h5", patience=3, lr_patience=None)
    _run(first, [1.0, 1.1, 1.2])
    state = json.loads(json.dumps(first.get_state()))
    second = PlateauMonitor(tmp_path / "b.h5", patience=3, lr_patience=None)
    second.set_state(state)
    model, _ = _run(second, [1.3])
    assert (
        model.stop_training and model.saved == []
    )  # the resumed counter stops at the 3rd bad epoch
    fresh = PlateauMonitor(tmp_path / "b.h5")
    fresh.set_state(PlateauMonitor(tmp_path / "b.h5").get_state())
    assert math.isinf(fresh.best)


def test_missing_monitor_names_the_logs(tmp_path):
    monitor = PlateauMonitor(tmp_path / "b.h5")
    monitor.set_model(FakeModel())
    with pytest.raises(KeyError, match="val_loss"):
        monitor.on_epoch_end(0, {"loss": 1.0})


def test_nan_guard_stops_with_the_key_and_place():
    guard = NaNGuard("runs/x/backup")
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(FloatingPointError, match=r"entropy=nan at epoch 3, batch 5.*runs/x/backup"):
        guard.on_train_batch_end(4, {"loss": 1.0, "entropy": float("nan")})


def test_backup_is_atomic_keeps_two_and_refuses_another_architecture(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.stage_optimizers = {}
    backup = RunBackup(tmp_path, keep=2)
    backup.set_model(model)
    for epoch in range(3):
        backup.on_epoch_end(epoch)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.npz")) == ["epoch-2.npz", "epoch-3.npz"]
    assert not list(tmp_path.glob("*.tmp*"))
    weights = [np.array(v) for v in model.variables]
    for v in model.variables:
        v.assign(np.zeros(v.shape))
    assert backup.restore(model) == 3
    for v, w in zip(model.variables, weights):
        np.testing.assert_array_equal(np.array(v), w)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    other.stage_optimizers = {}
    with pytest.raises(ValueError, match="expects"):
        backup.restore(other)
