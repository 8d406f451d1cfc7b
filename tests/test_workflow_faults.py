"""Faults of the workflow (issue 11): corrupt or truncated backups, and runs without backups."""

import json
import os

import keras
import numpy as np
import pytest

from keras_mmsa.training import RunConfig, train_and_evaluate
from keras_mmsa.training.callbacks import RunBackup

SHORT = {"audio": 24, "vision": 24}
RUN = "mmim_sample_seed7"
# 38 steps per epoch on the sample: with log_every=10 no epoch ends on a multiple of 10 (38, 76, 114).
TRAIN = {"epochs": 3, "log_every": 10}


def _config(**kw):
    base = dict(
        method="mmim",
        dataset="sample",
        seed=7,
        max_lengths=SHORT,
        jit_compile=False,
        deterministic=True,
        train=dict(TRAIN),
    )
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from keras_mmsa.data import pipeline

    d = tmp_path_factory.mktemp("tfds")
    os.environ["KMSA_DATA_DIR"] = str(d)
    # Prepared before any run: a run that prepares the dataset itself starts from another random state than
    # one that finds it prepared (seen here: a run in a fresh data folder differs from the same run after it).
    pipeline.prepare_builder("sample", data_dir=str(d))
    yield d
    os.environ.pop("KMSA_DATA_DIR", None)


# Items 3 (the whole history after a SIGKILL and a resume) and 4 (every epoch's TensorBoard scalars under
# log_every) are checked on the SIGKILL run of tests/test_workflow.py, which trains those runs anyway.


# ------------------------------------------------------------------------------- item 7: corrupt backups
def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.stage_optimizers = {}
    return model


def _write_epochs(backup_dir, model, n):
    backup = RunBackup(backup_dir)
    backup.set_model(model)
    weights = []
    for epoch in range(n):
        for v in model.variables:
            v.assign(np.full(v.shape, float(epoch + 1)))
        weights.append([np.array(v) for v in model.variables])
        backup.on_epoch_end(epoch)
    return backup, weights


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_newest_backup_falls_back_to_the_older_one(tmp_path):
    model = _model()
    backup, weights = _write_epochs(tmp_path, model, 3)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.npz")) == ["epoch-2.npz", "epoch-3.npz"]
    _truncate(tmp_path / "epoch-3.npz")
    for v in model.variables:
        v.assign(np.zeros(v.shape))
    with pytest.warns(UserWarning, match=r"epoch-3\.npz.*epoch-2\.npz") as caught:
        assert backup.restore(model) == 2
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    for v, w in zip(model.variables, weights[1]):
        np.testing.assert_array_equal(np.array(v), w)


def test_two_bad_backups_name_the_files_and_the_way_out(tmp_path):
    model = _model()
    backup, _ = _write_epochs(tmp_path, model, 2)
    _truncate(tmp_path / "epoch-2.npz")
    (tmp_path / "epoch-1.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError) as err:
        backup.restore(model)
    message = str(err.value)
    assert "epoch-2.npz" in message and "epoch-1.npz" in message
    assert "delete" in message.lower() and str(tmp_path) in message


def test_backup_writes_are_atomic_and_leftovers_are_removed(tmp_path, monkeypatch):
    model = _model()
    backup, _ = _write_epochs(tmp_path, model, 1)
    (tmp_path / "epoch-2.npz.tmp").write_bytes(b"half a snapshot of a killed process")
    before = (tmp_path / "epoch-1.npz").read_bytes()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        backup.on_epoch_end(1)
    monkeypatch.undo()
    # a failed write leaves the previous snapshot as it was, and no partial file under a snapshot's name
    assert (tmp_path / "epoch-1.npz").read_bytes() == before
    assert not (tmp_path / "epoch-2.npz").exists()
    assert backup.restore(model) == 1
    backup.on_epoch_end(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-1.npz",
        "epoch-2.npz",
        "state.json",
    ]


# -------------------------------------------------------------------------- item 10: runs without backups
def test_backup_false_writes_no_snapshot_and_says_resume_is_impossible(data_dir, tmp_path, capsys):
    config = _config(train={"epochs": 1, "log_every": 10}).with_overrides(["train.backup=false"])
    train_and_evaluate(config, tmp_path, verbose=1, export=False)
    run_dir = tmp_path / config.resolved().run_name  # the setting is part of the default name
    assert run_dir.name != RUN and run_dir.is_dir()
    assert not list(run_dir.rglob("*.npz"))
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1]
    assert "cannot resume" in capsys.readouterr().out
