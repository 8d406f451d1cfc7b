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


def _load_split(config, tokenizer, split, with_metadata=False):
    from keras_mmsa.data import pipeline

    return pipeline.load(
        config.dataset,
        split,
        int(config.train["batch_size"]),
        text_backbone=tokenizer,
        modalities=config.modalities,
        max_lengths=config.max_lengths,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        shuffle=False,
        with_metadata=with_metadata,
    )


def evaluate_run(run_dir, split="test", explain=False, out_dir=None):
    """Writes and returns the metric table of `split` for the run's best weights.

    Outputs in `out_dir` (default: the run directory): `eval_<split>.json`, `eval_<split>.md`, and with
    `explain=True`, `explain_<split>.csv`: per sample id, text, label, prediction and the method's per-sample
    scores (`model.explain(x)`, e.g. MMIM's fusion-modality CPC scores, MDM's statistic-network score
    `t_score`); a method without `explain` is an error. A method that names an `explain_sort_key` (MDM:
    `t_score`) gets its rows sorted by that score, highest first (so the lowest are last), with a `rank` column.
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
    ds = _load_split(config, tokenizer, split, with_metadata=explain)
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
        key = getattr(model, "explain_sort_key", None)
        if key is not None:
            rows = sort_explanations(rows, key)
        with open(out_dir / f"explain_{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return table


def sort_explanations(rows, key):
    """Rows sorted by `key`, highest first (ties keep their order), each with its 1-based `rank` first."""
    ordered = sorted(rows, key=lambda r: -float(r[key]))
    return [{"rank": i + 1, **r} for i, r in enumerate(ordered)]


# ---------------------------------------------------------------------------------------- modality drop


def drop_modalities(x, drop, *, pad_token_id=0):
    """The inputs dict with the modalities in `drop` blanked out, for the robustness test (MDM §5.3, Fig. 2).

    A dropped modality keeps its shape, its lengths and its mask, so the model runs unchanged and only the
    content is gone: `audio` / `vision` frames become zeros (`*_lengths` kept); text tokens become the
    tokenizer's padding id (0 for BERT's WordPiece) at every position, `padding_mask` and `segment_ids` kept,
    so the text encoder reads a sequence of the real length made of padding tokens. Zeros are in the model's
    input space (a model that standardises its frames sees the standardised zero, minus mean over std).

    Args:
        x: the inputs dict (`keras_mmsa.data.spec`).
        drop: modality names among ("text", "audio", "vision"); each must be among `x`'s modalities.
        pad_token_id: the id that replaces every token of a dropped text.

    Returns:
        A new dict (the other keys are the same tensors).
    """
    from keras_mmsa.data.spec import MODALITIES

    out = dict(x)
    for m in drop:
        if m not in MODALITIES:
            raise ValueError(f"--drop {m!r}: unknown modality; choose from {MODALITIES}")
        key = "token_ids" if m == "text" else m
        if key not in x:
            raise ValueError(
                f"--drop {m}: the inputs have no {m!r} modality (keys: {sorted(x)}); the run's "
                "modalities are the only ones that can be dropped"
            )
        value = np.asarray(x[key])
        if m == "text":
            out[key] = np.full_like(value, pad_token_id)
        else:
            out[key] = np.zeros_like(value)
    return out


def parse_drop(spec):
    """`"text,audio"` -> `("text", "audio")` (a `--drop` value; order of MODALITIES, no repeats)."""
    from keras_mmsa.data.spec import MODALITIES

    names = [m.strip() for m in str(spec).split(",") if m.strip()]
    unknown = [m for m in names if m not in MODALITIES]
    if not names or unknown:
        raise ValueError(f"--drop {spec!r}: expected comma-separated modalities among {MODALITIES}")
    return tuple(m for m in MODALITIES if m in names)


def _acc2_keys(table):
    return [k for k in ("has0_acc2", "non0_acc2", "acc2") if k in table]


def evaluate_drops(run_dir, drops, split="test", out_dir=None, plot=True):
    """Metrics of `split` with each set of modalities in `drops` dropped (`drop_modalities`), against all kept.

    For each drop set it reports the full metric table and, like the paper's Fig. 2, the ratio
    Acc-2_corrupt / Acc-2 (for MOSI/MOSEI both Has0 and Non0 Acc-2: `ratio_has0_acc2`, `ratio_non0_acc2`; SIMS:
    `ratio_acc2`). Works for any run (every method is evaluated through its prediction).

    Writes, in `out_dir` (default: the run directory): `robustness_<split>.json`, `robustness_<split>.md`, and
    `robustness_<split>.png` (bars of the ratios per kept set of modalities) when matplotlib is installed and
    `plot` is true.

    Args:
        run_dir: a finished run directory.
        drops: sequence of drop sets, each a sequence of modality names (or a "text,audio" string).
        split: "train", "validation" or "test".
        out_dir: where the files go.
        plot: write the PNG.

    Returns:
        `{"clean": table, "drops": {"<m1>+<m2>": {"dropped": [...], "kept": [...], "metrics": table,
        "ratio_<key>": value, ...}}, "plot": path or None, "plot_note": str or None}`.
    """
    run_dir = pathlib.Path(run_dir)
    out_dir = pathlib.Path(out_dir or run_dir)
    if isinstance(drops, str):  # one set, "text,audio"
        drops = [drops]
    drops = [parse_drop(d) if isinstance(d, str) else parse_drop(",".join(d)) for d in drops]
    if not drops:
        raise ValueError("evaluate_drops: give at least one set of modalities to drop")
    config, model, tokenizer = load_run(run_dir)
    from keras_mmsa.data import pipeline

    info = pipeline.dataset_info(config.dataset, data_dir=config.data_dir)
    pad = int(getattr(tokenizer, "pad_token_id", None) or 0)
    modalities = list(getattr(model, "modalities", info.modalities))
    for d in drops:
        missing = [m for m in d if m not in modalities]
        if missing:
            raise ValueError(
                f"--drop {','.join(d)}: the run uses the modalities {modalities}, not {missing}"
            )
    ds = _load_split(config, tokenizer, split)
    ys, clean, dropped = [], [], {d: [] for d in drops}
    for x, y in ds:
        # the clean batch and its blanked copies in one call (rows do not interact at inference)
        x = {k: v.numpy() for k, v in x.items()}
        variants = [x] + [drop_modalities(x, d, pad_token_id=pad) for d in drops]
        stacked = {k: np.concatenate([v[k] for v in variants]) for k in x}
        pred = np.asarray(model(stacked, training=False), np.float64).reshape(len(variants), -1)
        ys.append(np.asarray(y, np.float64).reshape(-1))
        clean.append(pred[0])
        for d, p in zip(drops, pred[1:]):
            dropped[d].append(p)
    y = np.concatenate(ys)
    clean_table = metrics.msa_metrics(y, np.concatenate(clean), family=info.family)
    report = {"clean": clean_table, "drops": {}}
    for d in drops:
        table = metrics.msa_metrics(y, np.concatenate(dropped[d]), family=info.family)
        entry = {
            "dropped": list(d),
            "kept": [m for m in modalities if m not in d],
            "metrics": table,
        }
        for k in _acc2_keys(table):
            entry[f"ratio_{k}"] = table[k] / clean_table[k] if clean_table[k] > 0 else float("nan")
        report["drops"]["+".join(d)] = entry
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {"all kept": clean_table}
    rows.update({f"drop {name}": e["metrics"] for name, e in report["drops"].items()})
    lines = [
        metrics.format_markdown(rows),
        "",
        "| drop | kept | "
        + " | ".join(
            f"{metrics.DISPLAY_NAMES.get(k, k)} corrupt / clean" for k in _acc2_keys(clean_table)
        )
        + " |",
        "|" + "---|" * (2 + len(_acc2_keys(clean_table))),
    ]
    for name, e in report["drops"].items():
        ratios = " | ".join(f"{e[f'ratio_{k}']:.3f}" for k in _acc2_keys(clean_table))
        lines.append(f"| {name} | {'+'.join(e['kept']) or '-'} | {ratios} |")
    (out_dir / f"robustness_{split}.md").write_text("\n".join(lines) + "\n")
    report["plot"], report["plot_note"] = None, None
    if plot:
        report["plot"], report["plot_note"] = _plot_drops(
            report, out_dir / f"robustness_{split}.png", title=f"{config.run_name} ({split})"
        )
    (out_dir / f"robustness_{split}.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    return report


def _plot_drops(report, path, title):
    """A bar chart of Acc-2_corrupt / Acc-2 per kept set of modalities (Fig. 2's axes); (path, None), or
    (None, why) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "matplotlib is not installed: no PNG (pip install matplotlib)"
    names = list(report["drops"])
    keys = _acc2_keys(report["clean"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(names) * len(keys), 3.2))
    width = 0.8 / len(keys)
    for j, k in enumerate(keys):
        values = [report["drops"][n][f"ratio_{k}"] for n in names]
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, values, width=width, label=metrics.DISPLAY_NAMES.get(k, k))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(
        [
            "kept: " + ("+".join(m[0].upper() for m in report["drops"][n]["kept"]) or "-")
            for n in names
        ]
    )
    ax.set_ylabel("Acc-2 corrupt / Acc-2")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ratios = [report["drops"][n][f"ratio_{k}"] for n in names for k in keys]
    top = max([1.0] + [r for r in ratios if np.isfinite(r)])
    ax.set_ylim(0.0, top + 0.2)  # room for the legend above the bars
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right", ncol=len(keys))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path), None
