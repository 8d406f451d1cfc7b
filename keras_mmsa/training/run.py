"""`train_and_evaluate(config, workdir)`: one run, from a `RunConfig` to a run directory.

The run directory `<workdir>/<run name>/` holds:

    config.json              the resolved RunConfig (everything needed to reproduce the run)
    model.json               the model architecture (Keras config; weights come from the checkpoints)
    tokenizer/               the text tokenizer (KerasHub preset files), so evaluation/export need no network
    logs/                    TensorBoard event files (train/ and validation/): every named loss per step and
                             epoch, the learning rates, the validation metrics
    checkpoints/best.weights.h5   the weights of the best epoch on the validation split
    backup/                  end-of-epoch snapshots for resuming, the newest and one fallback (see
                             `callbacks.RunBackup`); none with `train.backup=false`
    history.json             the epoch logs, written at every epoch end
    metrics.json             test metrics of the best-on-validation weights (the test split is used once)
    export/                  the SavedModel for TF Serving (see `export.py`)

Re-running the same command on an existing run directory resumes from `backup/` (the saved config must match;
a start that never finished an epoch is cleared instead). `config.json` is written only once the model is built,
so a start that fails on its inputs leaves nothing behind. `<run>/.lock` (holding the pid) keeps a second process
out of a run directory while one trains in it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil

import keras
import numpy as np
import tensorflow as tf

from keras_mmsa import backbones, metrics
from keras_mmsa.data import pipeline, staging
from keras_mmsa.training import callbacks as cbs
from keras_mmsa.training import registry
from keras_mmsa.training.config import RunConfig

CONFIG = "config.json"
MODEL = "model.json"
TOKENIZER = "tokenizer"
BEST = "checkpoints/best.weights.h5"
LOCK = ".lock"
HISTORY = "history.json"


@dataclasses.dataclass
class RunData:
    """The datasets of a run."""

    info: object
    train_examples: object  # unbatched, cached (inputs, label)
    num_train: int
    validation: object
    test: object


def run_dir_of(config, workdir):
    return pathlib.Path(workdir) / config.run_name


def configure_determinism(config):
    keras.utils.set_random_seed(int(config.seed))
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def load_data(config, tokenizer, *, splits=("train", "validation", "test")):
    """Prepares (offline) and loads the run's dataset splits."""
    pipeline.prepare_builder(config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir)
    info = pipeline.dataset_info(config.dataset, data_dir=config.data_dir)
    batch = int(config.train["batch_size"])
    common = dict(
        text_backbone=tokenizer,
        modalities=config.modalities,
        max_lengths=config.max_lengths,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        shuffle=False,
    )
    out = {"info": info}
    # Per-example state (Self-MM's label memories) needs each training example's index; such a method also gets
    # the unimodal labels on every split of a dataset that has them (SIMS, sample) to report on.
    method = getattr(config, "method", None)
    indexed = bool(method and getattr(registry.get_method(method), "needs_example_index", False))
    common["unimodal_labels"] = bool(info.unimodal_labels and indexed)
    if "train" in splits:
        out["train_examples"] = (
            pipeline.load(
                config.dataset,
                "train",
                batch,
                with_index=indexed,
                **common,
            )
            .unbatch()
            .cache()
        )
        out["num_train"] = (info.num_examples or {}).get("train") or staging.count_examples(
            out["train_examples"]
        )
    for split in ("validation", "test"):
        if split in splits:
            out[split] = pipeline.load(config.dataset, split, batch, **common).cache()
    if "train" in splits and getattr(config, "unlabeled_dataset", None):
        out["unlabeled_examples"], out["num_unlabeled"] = load_unlabeled(config, info, tokenizer)
    return out


def load_unlabeled(config, info, tokenizer):
    """`(examples, count)`: the train split of `config.unlabeled_dataset`, unbatched and cached, padded to the
    run dataset's lengths; refused unless its audio/vision sizes match the run dataset's."""
    name = config.unlabeled_dataset
    if name == config.dataset:
        raise ValueError(
            f"--unlabeled-dataset {name} is the run's own dataset; its train split is already labeled"
        )
    pipeline.prepare_builder(name, data_dir=config.data_dir, manual_dir=config.manual_dir)
    other = pipeline.dataset_info(name, data_dir=config.data_dir)
    modalities = config.modalities or list(info.modalities)
    for m in ("audio", "vision"):
        if m in modalities and (
            m not in other.modalities or getattr(other, f"{m}_dim") != getattr(info, f"{m}_dim")
        ):
            raise ValueError(
                f"--unlabeled-dataset {name}: its {m} features ({getattr(other, f'{m}_dim')} wide) do not "
                f"match {config.dataset}'s ({getattr(info, f'{m}_dim')}); use a dataset with the same features"
            )
    # the run dataset's padded lengths, so that labeled and unlabeled examples batch together
    lengths = pipeline.padded_lengths(info, config.max_lengths)
    examples = pipeline.load(
        name,
        "train",
        int(config.train["batch_size"]),
        text_backbone=tokenizer,
        modalities=modalities,
        max_lengths={m: n for m, n in lengths.items() if n},
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        shuffle=False,
    )
    examples = examples.unbatch().cache()
    count = (other.num_examples or {}).get("train") or staging.count_examples(examples)
    return examples, count


def with_unlabeled(labeled, unlabeled):
    """One unbatched stream of `(inputs, label, weight)`: the labeled examples with weight 1, then the
    unlabeled ones with label 0 and weight 0 (the epoch stream shuffles them together)."""

    def weigh(value):
        def fn(inputs, label):
            label = tf.cast(label, tf.float32)
            return inputs, label * value, tf.constant(value, tf.float32)

        return fn

    keys = set(labeled.element_spec[0])
    missing = keys - set(unlabeled.element_spec[0])
    if missing:
        raise ValueError(f"the unlabeled examples lack the inputs {sorted(missing)}")
    unlabeled = unlabeled.map(lambda inputs, label: ({k: inputs[k] for k in keys}, label))
    return labeled.map(weigh(1.0)).concatenate(unlabeled.map(weigh(0.0)))


def cache_text_features(data, model, config, *, verbose=0):
    """Adds the frozen text backbone's token states to every example of the run's datasets (in place).

    For a base model over a frozen text backbone (`FrozenTextBackbone`: TFN, LMF) that reads text: the
    backbone runs once per example here instead of in every training step, and the model reads
    `inputs["text_features"]` (same result: the backbone is frozen and in inference mode). Training-time
    only: the exported SavedModel takes token ids. Memory: N x L_t x H float32 per split (MOSI with MiniLM:
    1284 x 50 x 384 floats, 99 MB, for train). Returns True when the features were added.
    """
    import time

    from keras_mmsa.models.frozen_text_backbone import FrozenTextBackbone

    base = getattr(model, "backbone", model)
    if not isinstance(base, FrozenTextBackbone) or "text" not in base.modalities:
        return False
    start = time.perf_counter()
    encode = tf.function(base.text_features, jit_compile=bool(config.jit_compile))
    batch = int(config.train["batch_size"])
    features = pipeline.compute_text_features(data["train_examples"].batch(256), encode)
    data["train_examples"] = pipeline.attach_text_features(data["train_examples"], features).cache()
    for split in ("validation", "test"):
        if split in data:
            examples = data[split].unbatch()
            split_features = pipeline.compute_text_features(data[split], encode)
            data[split] = (
                pipeline.attach_text_features(examples, split_features).batch(batch).cache()
            )
    if verbose:
        print(
            f"Cached the frozen text backbone's features ({features.shape[0]} training examples, "
            f"{features.shape[1]} x {features.shape[2]}) in {time.perf_counter() - start:.1f} s."
        )
    return True


def build_model(config, info, backbone):
    """The built model of a resolved run config (`from_run_config` of the registered class)."""
    return registry.get_method(config.method).from_run_config(config, info, backbone)


def save_tokenizer(directory, backbone, tokenizer):
    """A KerasHub preset folder with the tokenizer and the backbone's architecture (no weights: those are in
    the checkpoints), so `load_text_tokenizer(directory)` works offline."""
    directory = pathlib.Path(directory)
    tokenizer.save_to_preset(str(directory))
    (directory / "config.json").write_text(
        json.dumps(keras.saving.serialize_keras_object(backbone), indent=1)
    )


def _check_existing_config(run_dir, config):
    """Refuses a run directory that holds another configuration, unless that run never finished an epoch.

    Returns True when it cleared such a stale start (its config.json and what it wrote next to it).
    """
    path = run_dir / CONFIG
    if not path.exists():
        return False
    saved = RunConfig.from_json(path).to_dict()
    new = config.to_dict()
    if saved == new:
        return False
    if (
        not (run_dir / "backup" / cbs.RunBackup.STATE).exists()
        and not (run_dir / "metrics.json").exists()
    ):
        for name in (CONFIG, MODEL, "history.json", TOKENIZER, "logs", "checkpoints", "backup"):
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        return True
    diff = []
    for key in sorted(new):
        a, b = saved.get(key), new[key]
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [
                f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            diff.append(f"{key}: {a!r} -> {b!r}")
    text = json.dumps({k: v for k, v in new.items() if k != "name"}, sort_keys=True, default=str)
    suggestion = f"{run_dir.name}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    raise ValueError(
        f"{run_dir} already holds a run with a different configuration; add --name {suggestion} to keep "
        f"both runs, or delete the folder to start over (differs in {', '.join(diff)})"
    )


class RunInUseError(RuntimeError):
    """Another process trains in the run directory."""


@contextlib.contextmanager
def _run_lock(run_dir):
    """Holds an exclusive `flock` on `<run_dir>/.lock` (which names the holder's pid) while a run trains.

    The lock goes with the process (a crash or SIGKILL releases it). A run directory this start created and
    left without a config.json (a start that failed before building its model) is removed on exit.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunInUseError(
            f"{run_dir} is in use by another training process (pid {holder}); wait for it to end, or "
            "use another --name"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        if created and not (run_dir / CONFIG).exists():
            (run_dir / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def train_and_evaluate(config, workdir="runs", *, verbose=1, export=True, callbacks=()):
    """Trains `config` in `<workdir>/<run name>/`, selects the best epoch on validation, tests it once.

    Args:
        config: a `RunConfig` (resolved and validated here against the method's preset).
        workdir: parent folder of the run directory.
        verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        export: write the SavedModel to `<run>/export`.
        callbacks: extra Keras callbacks (they run before the end-of-epoch backup).

    Returns:
        `{"test": {metric: value}, "best_epoch", "best_val_loss", ...}` (also written to metrics.json).

    Raises:
        ValueError: a setting of the wrong type or range, or a run directory holding another configuration.
        RunInUseError: another process trains in the run directory.
    """
    config = config.resolved()
    run_dir = run_dir_of(config, workdir)
    with _run_lock(run_dir):
        return _train_and_evaluate(config, run_dir, verbose, export, callbacks)


def train_in_subprocess(config, workdir="runs", *, verbose=1, export=False):
    """`train_and_evaluate` in a fresh Python process; returns the run's `metrics.json`.

    For sweeps that train many runs (`compare_configs`, benchmark grids): TensorFlow keeps every XLA program a
    process has compiled, and a sweep of a dozen XLA-compiled runs in one process has died with "LLVM
    compilation error: Cannot allocate memory" and grown to several GiB. A child per run starts clean. The child
    imports the same `keras_mmsa` as this process, inherits the environment (KERAS_BACKEND, KMSA_DATA_DIR) and
    writes to this process's stdout/stderr; finished runs are reused and unfinished ones resume as usual.

    Raises:
        RuntimeError: the child failed (its traceback is in the output above); naming the run directory.
    """
    import subprocess
    import sys
    import tempfile

    import keras_mmsa

    config = config.resolved()  # bad settings fail here, before a process starts
    run_dir = run_dir_of(config, workdir)
    env = dict(os.environ)
    package_root = str(pathlib.Path(keras_mmsa.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    code = "import sys; from keras_mmsa.training.run import _child_main; sys.exit(_child_main(sys.argv[1:]))"
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "config.json"
        config.to_json(path)
        argv = [
            sys.executable,
            "-c",
            code,
            str(path),
            str(workdir),
            str(int(verbose)),
            str(int(export)),
        ]
        done = subprocess.run(argv, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"training {run_dir} failed in its process (exit {done.returncode}; the output above says why); "
            "running the same command again resumes it"
        )
    return json.loads((run_dir / "metrics.json").read_text())


def _child_main(argv):
    """The process `train_in_subprocess` starts: config path, workdir, verbose, export."""
    from keras_mmsa.training.config import RunConfig

    config_path, workdir, verbose, export = argv
    config = RunConfig.from_json(config_path)
    train_and_evaluate(config, workdir, verbose=int(verbose), export=bool(int(export)))
    return 0


def _train_and_evaluate(config, run_dir, verbose, export, callbacks):
    if _check_existing_config(run_dir, config) and verbose:
        print(f"Cleared {run_dir}: its earlier start never finished an epoch.")
    configure_determinism(config)
    backbone, tokenizer = backbones.load_text_backbone(config.text_backbone)
    data = load_data(config, tokenizer)
    info = data["info"]
    method = registry.get_method(config.method)
    model = method.from_run_config(config, info, backbone)
    if config.train.get("cache_text_features", False):
        cached = cache_text_features(data, model, config, verbose=verbose)
        if cached and "unlabeled_examples" in data:
            raise ValueError(
                "train.cache_text_features with --unlabeled-dataset is not supported; set "
                "train.cache_text_features=false"
            )
    # the inputs are good: now the run directory fills
    backups = ("backup",) if config.train.get("backup", True) else ()
    for sub in ("logs", "checkpoints", *backups):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    config.to_json(run_dir / CONFIG)
    (run_dir / MODEL).write_text(json.dumps(keras.saving.serialize_keras_object(model), indent=1))
    save_tokenizer(run_dir / TOKENIZER, backbone, tokenizer)
    # A method whose train step XLA compiles too slowly (`xla_train_step = False`, e.g. MIRD) runs as a plain
    # TensorFlow graph whatever `jit_compile` says.
    jit_compile = bool(config.jit_compile) and getattr(method, "xla_train_step", True)
    if verbose and config.jit_compile and not jit_compile:
        print(
            f"{method.__name__} trains without XLA (its train step compiles too slowly; see its docstring)."
        )
    model.compile(
        optimizers=run_optimizers(method, model, config.train),
        metrics=[metrics.MSAMetrics(family=info.family)],
        jit_compile=jit_compile,
    )
    model.build_optimizers()
    if hasattr(model, "adapt"):
        # Training-split statistics only (e.g. input standardisation); a resumed run restores the same values.
        model.adapt(data["train_examples"].batch(512))

    train = config.train
    plateau = cbs.PlateauMonitor(
        run_dir / BEST,
        patience=train.get("patience"),
        lr_patience=train.get("lr_patience"),
        lr_factor=train.get("lr_factor", 0.5),
        lr_groups=model.lr_decay_groups(),
    )
    # written at every epoch end, and part of each backup
    history = cbs.HistoryLog(run_dir / HISTORY)
    backup = None
    first_epoch = 0
    if train.get("backup", True):
        backup = cbs.RunBackup(run_dir / "backup", resumables=[plateau, history])
        first_epoch = backup.restore(model)
    elif verbose:
        print(
            "train.backup=false: no end-of-epoch backups, so this run cannot resume; "
            "re-running it starts over from epoch 1."
        )
    epochs = int(train["epochs"])
    if first_epoch > 0 and verbose:
        print(f"Resuming {run_dir} from the backup after epoch {first_epoch}.")
    if first_epoch < epochs and not _stopped_early(plateau, train):
        examples, num_examples = data["train_examples"], data["num_train"]
        if "unlabeled_examples" in data:
            examples = with_unlabeled(examples, data["unlabeled_examples"])
            num_examples += data["num_unlabeled"]
            if verbose:
                print(
                    f"Training on {data['num_train']} labeled and {data['num_unlabeled']} unlabeled "
                    f"examples ({config.unlabeled_dataset}, sample weight 0)."
                )
        stream, steps = staging.epoch_stream(
            examples,
            batch_size=int(train["batch_size"]),
            seed=int(config.seed),
            num_epochs=epochs,
            first_epoch=first_epoch,
            num_examples=num_examples,
            stage_fractions=model.stage_schedule(),
        )
        model.fit(
            stream,
            validation_data=data["validation"],
            epochs=epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=steps,
            shuffle=False,  # the stream is already shuffled, per epoch, reproducibly
            callbacks=[
                plateau,
                cbs.NaNGuard(run_dir / "backup" if backup else None),
                # a method's own per-epoch measurements, before TensorBoard so that they are written
                *(
                    model.training_callbacks(data, train)
                    if hasattr(model, "training_callbacks")
                    else ()
                ),
                cbs.EpochTensorBoard(
                    log_dir=str(run_dir / "logs"), update_freq=int(train["log_every"])
                ),
                *callbacks,
                history,
                *([backup] if backup else []),  # last: it snapshots the state the others left
            ],
            verbose=verbose,
        )

    if not (run_dir / BEST).exists():
        raise RuntimeError(f"no best checkpoint was written in {run_dir / BEST}")
    model.load_weights(run_dir / BEST)
    result = _test(model, data["test"], info.family)
    extra = model.method_report(data) if hasattr(model, "method_report") else {}
    result = {
        "test": result,
        **extra,
        "best_epoch": plateau.best_epoch + 1,
        "best_val_loss": plateau.best,
        "dataset": config.dataset,
        "method": config.method,
        "seed": config.seed,
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if export:
        from keras_mmsa.training.export import export_saved_model

        export_saved_model(model, run_dir / "export", tokenizer=tokenizer, info=info, config=config)
    if verbose:
        print(f"Test metrics of the best epoch ({result['best_epoch']}) on {config.dataset}:")
        print(metrics.format_markdown({config.run_name: result["test"]}))
        print(f"Run directory: {run_dir}")
    return result


def run_optimizers(method, model, train):
    """`{group: optimizer}` of a run: the built model's `run_optimizers(train)` when it has one (a method over
    any base model, e.g. MDM, whose groups are its base model's), else the class's `optimizers_from_settings`."""
    own = getattr(model, "run_optimizers", None)
    return own(train) if own is not None else method.optimizers_from_settings(train)


def _stopped_early(plateau, train):
    patience = train.get("patience")
    return patience is not None and plateau.wait >= patience


def predict_split(model, dataset):
    """(labels, predictions) over a batched `(inputs, label)` dataset, as float64 numpy arrays."""
    y = np.concatenate([np.asarray(b[1], dtype=np.float64).reshape(-1) for b in dataset])
    p = np.asarray(model.predict(dataset, verbose=0), dtype=np.float64).reshape(-1)
    return y, p


def _test(model, dataset, family):
    y, p = predict_split(model, dataset)
    if not np.all(np.isfinite(p)):
        raise FloatingPointError("the best checkpoint predicts non-finite values on the test split")
    return metrics.msa_metrics(y, p, family=family)
