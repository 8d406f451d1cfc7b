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
import warnings

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


class HistoryLog(keras.callbacks.Callback, Resumable):
    """The epoch logs, written to `path` (JSON, one list per key plus `epoch`) at every epoch end.

    Keras' `History` lives in memory until `fit` returns, so a killed run lost it, and a resumed run had only the
    epochs it trained itself. This callback writes the file atomically after every epoch, and its state is part
    of each `RunBackup` snapshot, so a resumed run continues the history of the snapshot it starts from.
    """

    state_key = "history"

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)
        self.history = {}

    def get_state(self):
        return self.history

    def set_state(self, state):
        self.history = {key: list(values) for key, values in state.items()}

    def on_epoch_end(self, epoch, logs=None):
        n = epoch  # entries before this epoch: drop any beyond it (a rerun epoch replaces its entry)
        history = {key: values[:n] for key, values in self.history.items()}
        for key, value in (logs or {}).items():
            history.setdefault(key, [])
            history[key] += [None] * (n - len(history[key]))
            history[key].append(float(value))
        history["epoch"] = list(range(1, epoch + 2))
        self.history = history
        _atomic_write(self.path, (json.dumps(history, indent=1) + "\n").encode())


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` that writes every epoch's train and validation scalars.

    With an integer `update_freq`, Keras' callback keeps a `tf.summary.record_if(step % update_freq == 0)`
    context open between batches (its `_push_writer`), and `on_epoch_end` writes the epoch scalars inside it: an
    epoch's scalars were recorded only when its last global step was a multiple of `update_freq`. Here the epoch
    scalars (and the `evaluation_*_vs_iterations` ones) are written with recording forced on; the per-step curves
    keep their frequency.
    """

    def _log_epoch_metrics(self, epoch, logs):
        with self.summary.record_if(True):
            super()._log_epoch_metrics(epoch, logs)

    def on_test_end(self, logs=None):
        if self.model.optimizer and hasattr(self.model.optimizer, "iterations"):
            with self._val_writer.as_default(), self.summary.record_if(True):
                for name, value in (logs or {}).items():
                    self.summary.scalar(
                        f"evaluation_{name}_vs_iterations",
                        value,
                        step=self.model.optimizer.iterations,
                    )
        self._pop_writer()


def _all_state_variables(model):
    variables = list(model.variables)
    for group in sorted(getattr(model, "stage_optimizers", {})):
        variables += list(model.stage_optimizers[group].variables)
    return variables


_TMP = ".tmp"


def _atomic_write(path, data=None, *, write=None):
    """Writes `path` through a temporary file beside it, flushed to disk, then `os.replace`d over it: a reader
    (or a process killed mid-write) sees the old file or the new one, never a partial one."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + _TMP)
    try:
        with open(tmp, "wb") as f:
            if write is not None:
                write(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class BackupError(ValueError):
    """No usable snapshot in a run's `backup/` folder."""


class RunBackup(keras.callbacks.Callback):
    """Atomic end-of-epoch snapshots of the whole training state, and their restoration.

    A snapshot `epoch-<n>.npz` holds every model variable (seed-generator states included) and every optimizer
    variable, in a fixed order, plus the number of finished epochs and the state of the `Resumable` callbacks
    (the best-epoch counters, the history): each snapshot is complete on its own. Two are kept, the newest and
    the one before it as a fallback. Every file is written to a temporary name, flushed and renamed, so a
    process killed at any moment leaves the previous snapshots intact; `state.json` names the newest (for
    people and scripts; `restore` does not need it).

    `restore()` (called before `fit`) loads the newest snapshot and returns the epoch to start from; if that file
    is unreadable (truncated, corrupt) it warns in one line and falls back to the older one; if no snapshot is
    readable it raises `BackupError` naming the files. A resumed run reaches the same state as an uninterrupted
    one (given the same seed and an epoch-indexed data order, `keras_mmsa.data.staging.epoch_stream`).

    Args:
        backup_dir: the run's `backup/` folder.
        resumables: callbacks whose state is saved with the snapshot.
        keep: snapshots kept on disk: 2 (the newest and a fallback) or 1 (half the disk, no fallback).
    """

    STATE = "state.json"
    META = "__state__"

    def __init__(self, backup_dir, resumables=(), keep=2):
        super().__init__()
        if keep not in (1, 2):
            raise ValueError(f"RunBackup: keep must be 1 or 2, got {keep}")
        self.backup_dir = pathlib.Path(backup_dir)
        self.resumables = list(resumables)
        self.keep = keep

    def snapshots(self):
        """The snapshot files, newest first."""
        found = [p for p in self.backup_dir.glob("epoch-*.npz") if p.stem.split("-")[1].isdigit()]
        return sorted(found, key=lambda p: -int(p.stem.split("-")[1]))

    def _remove_leftovers(self):
        for tmp in self.backup_dir.glob(f"*{_TMP}*"):  # partial files of a killed or failed write
            tmp.unlink(missing_ok=True)

    def _read(self, path, variables):
        """(state, arrays) of a snapshot, all arrays read (a truncated file fails here, not half-way through
        the assignment). Unreadable: OSError/ValueError/...; another configuration: BackupError."""
        with open(path, "rb") as f:  # np.load(path) leaves the file open when the zip is truncated
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz (zip) file")
            f.seek(0)
            with np.load(f, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        if self.META in arrays:
            state = json.loads(arrays.pop(self.META).tobytes().decode())
        else:  # written before snapshots held their own state: state.json must name this file
            state = json.loads((self.backup_dir / self.STATE).read_text())
            if state.get("weights") != path.name:
                raise ValueError(f"{self.STATE} describes {state.get('weights')}, not this file")
        if len(arrays) != len(variables):
            raise BackupError(
                f"backup {path} holds {len(arrays)} arrays but the model has {len(variables)} state "
                "variables: it belongs to a different configuration"
            )
        for i, v in enumerate(variables):
            value = arrays[f"v{i}"]
            if tuple(value.shape) != tuple(v.shape):
                raise BackupError(
                    f"backup {path}: array {i} has shape {value.shape}, variable {v.path} expects "
                    f"{tuple(v.shape)}"
                )
        return state, arrays

    def restore(self, model):
        """Loads the newest readable snapshot into `model` (built and compiled); returns the epoch to start
        from (0 without a snapshot)."""
        if not self.backup_dir.is_dir():
            return 0
        self._remove_leftovers()
        variables = _all_state_variables(model)
        failed = []
        for path in self.snapshots():
            try:
                state, arrays = self._read(path, variables)
            except BackupError:
                raise
            except Exception as e:  # noqa: BLE001 - any unreadable file: zip, zlib, npy or JSON errors
                failed.append(f"{path} ({type(e).__name__}: {e})")
                continue
            if failed:
                warnings.warn(
                    f"backup {failed[-1]} is unreadable; resuming from the older snapshot {path}",
                    stacklevel=2,
                )
            for i, v in enumerate(variables):
                v.assign(arrays[f"v{i}"])
            for cb in self.resumables:
                if cb.state_key in state.get("callbacks", {}):
                    cb.set_state(state["callbacks"][cb.state_key])
            return int(state["epoch"])
        if failed:
            raise BackupError(
                f"no readable backup in {self.backup_dir}: {'; '.join(failed)}. Delete {self.backup_dir} "
                "to start the run over from epoch 1 (or restore a copy of the files)"
            )
        return 0

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1}.npz"
        state = {
            "epoch": epoch + 1,
            "weights": name,
            "callbacks": {cb.state_key: cb.get_state() for cb in self.resumables},
        }
        arrays = {
            f"v{i}": keras.ops.convert_to_numpy(v)
            for i, v in enumerate(_all_state_variables(self.model))
        }
        arrays[self.META] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        _atomic_write(self.backup_dir / name, write=lambda f: np.savez(f, **arrays))
        summary = {k: state[k] for k in ("epoch", "weights")}
        _atomic_write(self.backup_dir / self.STATE, (json.dumps(summary, indent=2) + "\n").encode())
        for old in self.snapshots()[self.keep :]:
            old.unlink()
