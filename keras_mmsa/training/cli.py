"""Command-line front ends of `scripts/train.py`, `scripts/evaluate.py`, `scripts/export.py` and
`scripts/compare.py`.

Each parses flags into one library call. Any failure prints one line `error: ...` and exits with status 2
(bad input: unknown method, missing files, unreadable data or backbone) or 1 (anything else); `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    OSError,
)


def _one_line(exc):
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # ANSI colours of Keras' error wrapping
    text = " ".join(text.split())
    if (
        len(text) > 600
    ):  # cut the middle (long lists), keep the start (what) and the end (the advice)
        text = text[:300] + " ... " + text[-295:]
    return text or type(exc).__name__


def guarded(main):
    """Runs `main(args)`; turns exceptions into one line on stderr and an exit status unless --debug."""

    def wrapper(argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        try:
            return main(argv) or 0
        except KeyboardInterrupt:
            print(
                "interrupted: re-run the same command to resume from the last backup",
                file=sys.stderr,
            )
            return 130
        except SystemExit:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into messages
            if debug:
                raise
            user = isinstance(exc, USER_ERRORS) or type(exc).__name__ in (
                "AssertionError",
                "PresetUnavailableError",
                "DatasetNotFoundError",
                "NonMatchingChecksumError",
                "RunInUseError",
            )
            kind = "" if user else f"{type(exc).__name__}: "
            print(
                f"error: {kind}{_one_line(exc)} (run with --debug for the traceback)",
                file=sys.stderr,
            )
            return 2 if user else 1

    return wrapper


def _quiet_tensorflow():
    """Imports TensorFlow with its C++ start-up lines (oneDNN, CUDA probing) kept off the terminal.

    TensorFlow 2.21 prints them even with TF_CPP_MIN_LOG_LEVEL set from Python (only a level of 3 in the
    environment at process start hides them), so stderr is redirected at the file-descriptor level for the
    import only; if the import fails, what it printed is shown.
    """
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # later C++ lines (CUDA probing at first op)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def train_parser(
    *,
    prog="train.py",
    description="Train a keras_mmsa method; runs offline on the bundled `sample` dataset by default.",
    seeds_default=None,
    seeds_help="comma-separated seeds: one run each, then mean ± std",
    export=True,
):
    """train.py's flags (compare.py takes the same, with its own --seeds default and no --no-export)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    from keras_mmsa.training.registry import METHODS

    p.add_argument("--method", required=True, help=f"method name: {', '.join(METHODS)}")
    p.add_argument(
        "--dataset",
        default=None,
        help="msa builder config: sample (default; sample_aligned for word-aligned methods), mosi_unaligned, ...",
    )
    p.add_argument(
        "--unlabeled-dataset",
        default=None,
        help="msa builder config whose train split is mixed into training as unlabeled examples "
        "(sample weight 0: labels ignored), e.g. sample_unlabeled (MIRD's Algorithm 1)",
    )
    p.add_argument(
        "--manual-dir", default=None, help="folder with the dataset's files (pickles, .csd, csv)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data dir (default $KMSA_DATA_DIR or ~/tensorflow_datasets)",
    )
    p.add_argument(
        "--text-backbone", default=None, help="tiny, a KerasHub preset name, or a local directory"
    )
    p.add_argument("--modalities", default=None, help="comma-separated subset of text,audio,vision")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--seeds", default=seeds_default, help=seeds_help)
    p.add_argument("--workdir", default="runs", help="parent of the run directory (default runs/)")
    p.add_argument(
        "--name", default=None, help="run directory name (default <method>_<dataset>_seed<seed>)"
    )
    p.add_argument(
        "--config", default=None, help="a config.json to start from (e.g. of an earlier run)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting: seed=3, train.lr_main=5e-4, model.alpha=0.1 (repeatable)",
    )
    p.add_argument("--no-jit", action="store_true", help="disable XLA compilation")
    p.add_argument("--deterministic", action="store_true", help="enable TensorFlow op determinism")
    if export:
        p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    p.add_argument(
        "--verbose",
        type=int,
        default=1,
        help="Keras verbosity: 0 silent, 1 progress bar, 2 a line per epoch",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def config_from_args(args):
    from keras_mmsa.training.config import RunConfig

    base = RunConfig.from_json(args.config).to_dict() if args.config else {}
    config = RunConfig.from_dict({**base, "method": args.method})
    updates = {}
    for key in (
        "dataset",
        "unlabeled_dataset",
        "manual_dir",
        "data_dir",
        "text_backbone",
        "seed",
        "name",
    ):
        value = getattr(args, key)
        if value is not None:
            updates[key] = value
    if args.modalities:
        updates["modalities"] = [m.strip() for m in args.modalities.split(",") if m.strip()]
    if args.no_jit:
        updates["jit_compile"] = False
    if args.deterministic:
        updates["deterministic"] = True
    train = dict(config.train)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.batch_size is not None:
        train["batch_size"] = args.batch_size
    updates["train"] = train
    config = RunConfig.from_dict({**config.to_dict(), **updates})
    if config.manual_dir is not None and not os.path.isdir(os.path.expanduser(config.manual_dir)):
        raise FileNotFoundError(f"--manual-dir {config.manual_dir} is not a directory")
    return config.with_overrides(args.set)


@guarded
def train_main(argv):
    args = train_parser().parse_args(argv)
    _quiet_tensorflow()
    config = config_from_args(args)
    config.resolved()  # every value checked (one line, exit 2) before TensorFlow builds anything
    if args.seeds:
        from keras_mmsa.training.seeds import run_seeds

        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(
                f"--seeds expects comma-separated integers, e.g. 1111,1112; got {args.seeds!r}"
            ) from None
        run_seeds(config, seeds, args.workdir, verbose=args.verbose, export=not args.no_export)
        return 0
    from keras_mmsa.training.run import train_and_evaluate

    train_and_evaluate(config, args.workdir, verbose=args.verbose, export=not args.no_export)
    return 0


@guarded
def evaluate_main(argv):
    p = argparse.ArgumentParser(prog="evaluate.py", description="Metric table of a finished run.")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument(
        "--explain",
        action="store_true",
        help="also write per-sample explanation scores (the method's explain(), e.g. MMIM's CPC scores)",
    )
    p.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="MODALITIES",
        help="also evaluate with these modalities blanked (e.g. text, or text,audio; repeatable): "
        "Acc-2 corrupt / Acc-2 per set, a table and a PNG (MDM Fig. 2). Frames become zeros, text tokens "
        "the padding id; lengths and masks are kept",
    )
    p.add_argument("--no-plot", action="store_true", help="with --drop: no PNG")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    _quiet_tensorflow()
    import json

    from keras_mmsa import metrics
    from keras_mmsa.training.evaluation import evaluate_drops, evaluate_run, parse_drop

    drops = [parse_drop(d) for d in args.drop]  # bad values fail before anything loads
    table = evaluate_run(args.run_dir, args.split, explain=args.explain)
    print(json.dumps(table, indent=2))
    print(
        metrics.format_markdown(
            {f"{os.path.basename(os.path.normpath(args.run_dir))} ({args.split})": table}
        )
    )
    if args.explain:
        _print_explanations(os.path.join(args.run_dir, f"explain_{args.split}.csv"))
    if drops:
        report = evaluate_drops(args.run_dir, drops, args.split, plot=not args.no_plot)
        md = os.path.join(args.run_dir, f"robustness_{args.split}.md")
        print(open(md).read())
        if report["plot"] or report["plot_note"]:
            print(f"Plot: {report['plot']}" if report["plot"] else report["plot_note"])
    return 0


def _print_explanations(path, k=5):
    """The first and last `k` rows of an explanation file (sorted files: the highest and lowest scores)."""
    import csv

    rows = list(csv.DictReader(open(path)))
    print(f"Per-sample explanations: {path} ({len(rows)} rows)")
    if "rank" not in (rows[0] if rows else {}):
        return
    shown = rows if len(rows) <= 2 * k else rows[:k] + [None] + rows[-k:]
    score = [c for c in rows[0] if c not in ("rank", "id", "text", "label", "prediction")][0]
    for r in shown:
        if r is None:
            print("  ...")
            continue
        text = r["text"] if len(r["text"]) <= 70 else r["text"][:67] + "..."
        print(
            f"  #{r['rank']:>4} {score}={float(r[score]):.4f} label={float(r['label']):+.2f} "
            f"pred={float(r['prediction']):+.2f} {r['id']}: {text}"
        )


@guarded
def compare_main(argv):
    p = train_parser(
        prog="compare.py",
        description="Train a configuration with and without its penalty over seeds; mean ± std per metric "
        "and the Mann–Whitney U p-value (MDM Tables 1-2). Takes train.py's flags.",
        seeds_default="1111,1112,1113,1114,1115",
        seeds_help="comma-separated seeds, the same for both arms (default MMSA's 1111-1115)",
        export=False,
    )
    p.add_argument(
        "--baseline-set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="overrides that make the baseline (default for mdm: model.penalty=none; repeatable)",
    )
    args = p.parse_args(argv)
    _quiet_tensorflow()
    from keras_mmsa.training.compare import baseline_of, compare_configs, format_comparison

    config = config_from_args(args)
    config.resolved()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers; got {args.seeds!r}") from None
    baseline = baseline_of(config, args.baseline_set)
    result = compare_configs(config, baseline, seeds, args.workdir, verbose=args.verbose)
    # the table always reaches stdout (`--verbose` is the Keras verbosity of the runs)
    print(format_comparison(result))
    print(f"Written: {', '.join(result['files'])}")
    return 0


@guarded
def export_main(argv):
    p = argparse.ArgumentParser(
        prog="export.py", description="SavedModel (TF Serving) of a finished run."
    )
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="output folder (default <run_dir>/export)")
    p.add_argument(
        "--features-only",
        action="store_true",
        help="only the `serve` signature (token ids): loads without tensorflow_text",
    )
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    _quiet_tensorflow()
    from keras_mmsa.data import pipeline
    from keras_mmsa.training.evaluation import load_run
    from keras_mmsa.training.export import export_saved_model

    config, model, tokenizer = load_run(args.run_dir)
    info = pipeline.dataset_info(config.dataset, data_dir=config.data_dir)
    out = args.out or os.path.join(args.run_dir, "export")
    export_saved_model(
        model,
        out,
        tokenizer=tokenizer,
        info=info,
        config=config,
        text_signature=not args.features_only,
    )
    signatures = "serve" if args.features_only else "serve, serve_text"
    print(f"SavedModel written to {out} (signatures: {signatures}); inspect it with")
    print(f"  saved_model_cli show --dir {out} --all")
    return 0
