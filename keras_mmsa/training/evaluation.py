"""Evaluation of a finished run directory: the metric table of a split, and per-sample explanations."""

from __future__ import annotations

import csv
import json
import pathlib

import keras
import numpy as np

from keras_mmsa import backbones, metrics
from keras_mmsa.training import registry
from keras_mmsa.training import run as run_lib
from keras_mmsa.training.config import RunConfig


def load_run(run_dir):
    """(resolved RunConfig, model with the best-on-validation weights, tokenizer) of a run directory."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / run_lib.CONFIG).exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {run_lib.CONFIG})")
    config = RunConfig.from_json(run_dir / run_lib.CONFIG)
    best = run_dir / run_lib.BEST
    if not best.exists():
        raise FileNotFoundError(f"{best} does not exist: the run has not finished an epoch")
    # The method's module registers its classes (and its base model's) with Keras before deserializing.
    registry.get_method(config.method)
    import keras_mmsa.models  # noqa: F401  (Supervised and every base model a method may wrap)

    model = keras.saving.deserialize_keras_object(json.loads((run_dir / run_lib.MODEL).read_text()))
    model.build(_build_shapes(model, config))
    model.load_weights(best)
    tokenizer = backbones.load_text_tokenizer(str(run_dir / run_lib.TOKENIZER))
    return config, model, tokenizer


def _build_shapes(model, config):
    from keras_mmsa.data import pipeline

    info = pipeline.dataset_info(config.dataset, data_dir=config.data_dir)
    lengths = dict(info.lengths)
    lengths.update(config.max_lengths or {})
    return {
        "token_ids": (None, lengths.get("text")),
        "audio": (None, lengths.get("audio"), getattr(model, "audio_dim", None)),
        "vision": (None, lengths.get("vision"), getattr(model, "vision_dim", None)),
    }


def evaluate_run(run_dir, split="test", explain=False, out_dir=None):
    """Writes and returns the metric table of `split` for the run's best weights.

    Outputs in `out_dir` (default: the run directory): `eval_<split>.json`, `eval_<split>.md`, and with
    `explain=True`, `explain_<split>.csv`: per sample id, text, label, prediction and the method's per-sample
    scores (`model.explain(x)`, e.g. MMIM's fusion-modality CPC scores); a method without `explain` is an error.
    """
    from keras_mmsa.data import pipeline

    run_dir = pathlib.Path(run_dir)
    out_dir = pathlib.Path(out_dir or run_dir)
    config, model, tokenizer = load_run(run_dir)
    if explain and not hasattr(model, "explain"):
        raise ValueError(
            f"--explain: {type(model).__name__} ({config.method}) has no explanation scores"
        )
    info = pipeline.dataset_info(config.dataset, data_dir=config.data_dir)
    ds = pipeline.load(
        config.dataset,
        split,
        int(config.train["batch_size"]),
        text_backbone=tokenizer,
        modalities=config.modalities,
        max_lengths=config.max_lengths,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        shuffle=False,
        with_metadata=explain,
    )
    rows = []
    ys, ps = [], []
    for batch in ds:
        x, y = batch[0], batch[1]
        if explain:
            out = {k: np.asarray(v) for k, v in model.explain(x).items()}
            meta = batch[2]
            for i in range(len(out["prediction"])):
                row = {
                    "id": meta["id"][i].numpy().decode(),
                    "text": meta["text"][i].numpy().decode(),
                    "label": float(y[i]),
                    "prediction": float(out["prediction"][i]),
                }
                row.update({k: float(v[i]) for k, v in out.items() if k != "prediction"})
                rows.append(row)
            pred = out["prediction"]
        else:
            pred = np.asarray(model(x, training=False))
        ys.append(np.asarray(y, np.float64).reshape(-1))
        ps.append(np.asarray(pred, np.float64).reshape(-1))
    table = metrics.msa_metrics(np.concatenate(ys), np.concatenate(ps), family=info.family)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"eval_{split}.json").write_text(json.dumps(table, indent=2) + "\n")
    (out_dir / f"eval_{split}.md").write_text(
        metrics.format_markdown({config.run_name: table}) + "\n"
    )
    if explain:
        with open(out_dir / f"explain_{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return table
