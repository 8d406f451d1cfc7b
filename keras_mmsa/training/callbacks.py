"""Callbacks of the training workflow, all resumable.

Keras' `BackupAndRestore` restores weights and the epoch, but not the random-number state of dropout layers,
the optimizers of a multi-optimizer model, nor the counters of `EarlyStopping`, `ReduceLROnPlateau` and
`ModelCheckpoint(save_best_only=True)`: a resumed run would drift from an uninterrupted one and could overwrite
the best checkpoint with a worse epoch. `RunBackup` snapshots *all* state (every model variable including
seed-generator states, every optimizer variable, and the state of the `Resumable` callbacks) at each epoch end,
atomically, and restores it before `fit`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import keras
import numpy as np


class Resumable:
    """A callback whose state `RunBackup` saves and restores (`get_state` / `set_state` of JSON values)."""

    state_key = None

    def get_state(self):
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError


class PlateauMonitor(keras.callbacks.Callback, Resumable):
    """Best-on-validation checkpoint, per-group learning-rate decay and early stopping, from one monitor.

    On every epoch end: if `monitor` improved, the weights are saved to `best_path` (the test split is never
    looked at). If it has not improved for `lr_patience` epochs, the learning rate of every optimizer in
    `lr_groups` is multiplied by `lr_factor` (the reference code's `ReduceLROnPlateau(patience=when,
    factor=0.5)` on the main optimizer). After `patience` epochs without improvement, training stops.

    Args:
        best_path: file for the best weights (`.weights.h5`).
        monitor: a key of the epoch logs (default "val_loss", the validation MAE).
        patience: epochs without improvement before stopping (None: never stop early).
        lr_patience: epochs without improvement before a learning-rate decay (None: never).
        lr_factor: decay factor.
        lr_groups: names of the optimizer groups to decay (keys of `model.stage_optimizers`); None: the
            groups the method declares (`model.lr_decay_groups()`). A group the model has no optimizer for,
            or whose learning rate is a `LearningRateSchedule` (which cannot be set), is an error at the
            start of training, never a silent skip.
        min_lr: floor of the decayed learning rates.
        min_delta: smallest decrease that counts as an improvement.
    """

    state_key = "plateau"

    def __init__(
        self,
        best_path,
        monitor="val_loss",
        patience=None,
        lr_patience=None,
        lr_factor=0.5,
        lr_groups=None,
        min_lr=0.0,
        min_delta=0.0,
    ):
        super().__init__()
        self.best_path = str(best_path)
        self.monitor = monitor
        self.patience = patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.lr_groups = None if lr_groups is None else tuple(lr_groups)
        self.min_lr = min_lr
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.wait = 0
        self.lr_wait = 0

    def get_state(self):
        return {
            "best": None if math.isinf(self.best) else self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "lr_wait": self.lr_wait,
        }

    def set_state(self, state):
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])
        self.lr_wait = int(state["lr_wait"])

    def _decayed_groups(self):
        groups = self.lr_groups
        if groups is None:
            groups = tuple(self.model.lr_decay_groups())
        optimizers = getattr(self.model, "stage_optimizers", {})
        unknown = [g for g in groups if g not in optimizers]
        if unknown:
            raise ValueError(
                f"PlateauMonitor: lr_groups {unknown} have no optimizer in this model "
                f"(its optimizer groups: {sorted(optimizers)})"
            )
        scheduled = [
            g
            for g in groups
            if isinstance(
                optimizers[g]._learning_rate, keras.optimizers.schedules.LearningRateSchedule
            )
        ]
        if scheduled:
            raise ValueError(
                f"PlateauMonitor: the optimizer group(s) {scheduled} follow a LearningRateSchedule, which a "
                "plateau decay cannot change; leave them out of lr_groups / lr_decay_groups(), or set "
                "train.lr_patience=null"
            )
        return groups

    def on_train_begin(self, logs=None):
        if self.lr_patience is not None:
            self._groups = self._decayed_groups()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"PlateauMonitor: '{self.monitor}' is not in the epoch logs {sorted(logs)}; "
                "pass validation data to fit()"
            )
        value = float(logs[self.monitor])
        if value < self.best - self.min_delta:
            self.best, self.best_epoch = value, epoch
            self.wait = self.lr_wait = 0
            self.model.save_weights(self.best_path, overwrite=True)
            return
        self.wait += 1
        self.lr_wait += 1
        if self.lr_patience is not None and self.lr_wait >= self.lr_patience:
            self.lr_wait = 0
            groups = getattr(self, "_groups", None) or self._decayed_groups()
            for group in groups:
                opt = self.model.stage_optimizers[group]
                lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
                opt.learning_rate = max(lr * self.lr_factor, self.min_lr)
        if self.patience is not None and self.wait >= self.patience:
            self.model.stop_training = True


class NaNGuard(keras.callbacks.Callback):
    """Stops with a clear error at the first non-finite training log (no silent NaN)."""

    def __init__(self, backup_dir=None):
        super().__init__()
        self.backup_dir = backup_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            v = float(value)
            if not math.isfinite(v):
                where = f" The last good state is in {self.backup_dir}." if self.backup_dir else ""
                raise FloatingPointError(
                    f"non-finite training value {key}={v} at epoch {self._epoch + 1}, batch {batch + 1}.{where}"
                )


def _all_state_variables(model):
    variables = list(model.variables)
    for group in sorted(getattr(model, "stage_optimizers", {})):
        variables += list(model.stage_optimizers[group].variables)
    return variables


class RunBackup(keras.callbacks.Callback):
    """Atomic end-of-epoch snapshots of the whole training state, and their restoration.

    A snapshot is `epoch-<n>.npz` (every model variable, seed-generator states included, and every optimizer
    variable, in a fixed order) plus `state.json` naming it, the number of finished epochs and the state of the
    `Resumable` callbacks. Both are written to temporary files and renamed, `state.json` last, so a process
    killed at any moment leaves the previous consistent snapshot. `restore()` (called before `fit`) loads it
    and returns the epoch to start from; a resumed run then reaches the same state as an uninterrupted one
    (given the same seed and an epoch-indexed data order, `keras_mmsa.data.staging.epoch_stream`).

    Args:
        backup_dir: the run's `backup/` folder.
        resumables: callbacks whose state is saved with the snapshot.
        keep: snapshots kept on disk (the newest `keep`).
    """

    STATE = "state.json"

    def __init__(self, backup_dir, resumables=(), keep=2):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.resumables = list(resumables)
        self.keep = keep

    def restore(self, model):
        """Loads the newest snapshot into `model` (built and compiled); returns the epoch to start from."""
        state_path = self.backup_dir / self.STATE
        if not state_path.exists():
            return 0
        try:
            state = json.loads(state_path.read_text())
            arrays = np.load(self.backup_dir / state["weights"])
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(
                f"backup in {self.backup_dir} is unreadable ({e}); delete the folder to start over"
            ) from None
        variables = _all_state_variables(model)
        if len(arrays.files) != len(variables):
            raise ValueError(
                f"backup {self.backup_dir / state['weights']} holds {len(arrays.files)} arrays but the "
                f"model has {len(variables)} state variables: it belongs to a different configuration"
            )
        for i, v in enumerate(variables):
            value = arrays[f"v{i}"]
            if tuple(value.shape) != tuple(v.shape):
                raise ValueError(
                    f"backup {self.backup_dir / state['weights']}: array {i} has shape {value.shape}, "
                    f"variable {v.path} expects {tuple(v.shape)}"
                )
            v.assign(value)
        for cb in self.resumables:
            if cb.state_key in state.get("callbacks", {}):
                cb.set_state(state["callbacks"][cb.state_key])
        return int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1}.npz"
        arrays = {
            f"v{i}": keras.ops.convert_to_numpy(v)
            for i, v in enumerate(_all_state_variables(self.model))
        }
        tmp = self.backup_dir / (name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self.backup_dir / name)
        state = {
            "epoch": epoch + 1,
            "weights": name,
            "callbacks": {cb.state_key: cb.get_state() for cb in self.resumables},
        }
        tmp_state = self.backup_dir / (self.STATE + ".tmp")
        tmp_state.write_text(json.dumps(state, indent=2))
        os.replace(tmp_state, self.backup_dir / self.STATE)
        snapshots = sorted(
            self.backup_dir.glob("epoch-*.npz"), key=lambda p: int(p.stem.split("-")[1])
        )
        for old in snapshots[: -self.keep]:
            old.unlink()
