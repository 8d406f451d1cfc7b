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

Re-running the same command on an existing run directory resumes from `backup/` (the saved config must match).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

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
    if "train" in splits:
        out["train_examples"] = (
            pipeline.load(config.dataset, "train", batch, **common).unbatch().cache()
        )
        out["num_train"] = (info.num_examples or {}).get("train") or staging.count_examples(
            out["train_examples"]
        )
    for split in ("validation", "test"):
        if split in splits:
            out[split] = pipeline.load(config.dataset, split, batch, **common).cache()
    return out


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
    path = run_dir / CONFIG
    if not path.exists():
        return
    saved = RunConfig.from_json(path)
    if saved.to_dict() != config.to_dict():
        diff = sorted(
            k for k in config.to_dict() if saved.to_dict().get(k) != config.to_dict().get(k)
        )
        raise ValueError(
            f"{run_dir} already holds a run with a different configuration (differs in {diff}); "
            "use another --workdir/--name, or delete the folder to start over"
        )


def train_and_evaluate(config, workdir="runs", *, verbose=1, export=True, callbacks=()):
    """Trains `config` in `<workdir>/<run name>/`, selects the best epoch on validation, tests it once.

    Args:
        config: a `RunConfig` (resolved here against the method's preset).
        workdir: parent folder of the run directory.
        verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        export: write the SavedModel to `<run>/export`.
        callbacks: extra Keras callbacks (they run before the end-of-epoch backup).

    Returns:
        `{"test": {metric: value}, "best_epoch", "best_val_loss", ...}` (also written to metrics.json).
    """
    config = config.resolved()
    run_dir = run_dir_of(config, workdir)
    _check_existing_config(run_dir, config)
    for sub in ("logs", "checkpoints"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    config.to_json(run_dir / CONFIG)

    configure_determinism(config)
    backbone, tokenizer = backbones.load_text_backbone(config.text_backbone)
    data = load_data(config, tokenizer)
    info = data["info"]
    method = registry.get_method(config.method)
    model = method.from_run_config(config, info, backbone)
    (run_dir / MODEL).write_text(json.dumps(keras.saving.serialize_keras_object(model), indent=1))
    save_tokenizer(run_dir / TOKENIZER, backbone, tokenizer)
    model.compile(
        optimizers=method.optimizers_from_settings(config.train),
        metrics=[metrics.MSAMetrics(family=info.family)],
        jit_compile=config.jit_compile,
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
        stream, steps = staging.epoch_stream(
            data["train_examples"],
            batch_size=int(train["batch_size"]),
            seed=int(config.seed),
            num_epochs=epochs,
            first_epoch=first_epoch,
            num_examples=data["num_train"],
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
    result = {
        "test": result,
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
