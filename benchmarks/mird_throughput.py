"""MIRD training throughput and peak memory, against the official MIRD PyTorch code on the same batches (issue 13).

    python benchmarks/mird_throughput.py --torch-python PATH/TO/torch-venv/bin/python --mird-src MIRD_COPY
    python benchmarks/mird_throughput.py --quick --out OUT_DIR                  # Keras side only, tiny, minutes

MIRD_COPY is an unmodified copy of github.com/qianfan1996/MIRD (e.g. `git clone` it, or `git --git-dir=REPO.git
archive HEAD | tar -x -C MIRD_COPY`); nothing of it is copied into this repository. Writes mird.json and mird.md
into --out (default benchmarks/results/training). The reference, `torch_mird.py` beside this file, imports the
official `run_training_recon_mim.py` with run-time patches for torch 2.13 / transformers 4 on the CPU (listed in
its `PATCHES` and in the report) and times its own `train_epoch` on one batch; without --torch-python (or
--mird-src) the ratios are left out.

One iteration = one MIRD training step of Algorithm 1 on one batch: T' = 5 updates of the CLUB networks and one
update of the model (forward, all losses, backward, optimizer steps). keras_mmsa: `MIRD.train_on_batch` on a
batch without a stage id (the engine runs the "club" stage, 5 repeats on the detached representations of one
forward pass, then the "model" stage), MOSI preset, without XLA (`MIRD.xla_train_step` is False). Official: its
`train_epoch` over a loader of that one batch (the model update first, then 5 CLUB updates, each with a full
forward and backward pass of the model). Both sides over a BERT with random weights: "tiny" (the toolkit's
2-layer, 64-wide BERT and its vocabulary) or "base" (bert-base-uncased's sizes, vocabulary 30522).

Batches: `training_throughput.synthetic_batches` (MOSI-unaligned shapes: 50 tokens, audio 375 x 5, vision 500 x
20, MOSI-like lengths), written once per configuration to one .npz that both sides read. Each configuration runs
in a fresh process per side (`ru_maxrss` is its own peak); per configuration the PyTorch runs come right before
the Keras one, so both see the same load. Read the ratios within one run, and the recorded load averages.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import pathlib
import subprocess
import sys
import time

if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import throughput_common as tc  # noqa: E402
from benchmarks.throughput_common import (  # noqa: E402
    BACKBONES,
    MOSI_TRAIN_EXAMPLES,
    Case,
    vocabulary_size,
)
from benchmarks.throughput_common import fmt as _fmt  # noqa: E402
from benchmarks.training_throughput import (  # noqa: E402
    Shapes,
    peak_rss_mb,
    save_batches,
    synthetic_batches,
)

TORCH_SCRIPT = pathlib.Path(__file__).resolve().with_name("torch_mird.py")
BATCH_SIZES = (32, 16)
JSON_NAME, MD_NAME = "mird.json", "mird.md"

# What differs between the two sides beyond the framework (the report lists it under the table).
DIFFERENCES = [
    "CLUB stage: keras_mmsa runs T' = 5 CLUB updates on the detached representations of ONE forward pass "
    "(the engine's auxiliary stage); the official `train_epoch` re-runs the whole model forward for each of "
    "its 5 CLUB updates and back-propagates through the model too (its representations are not detached; "
    "only the CLUB networks step). Per batch the official code thus runs 6 forward and 6 backward passes of "
    "the model, keras_mmsa 1 forward and 1 backward (plus 5 small CLUB passes).",
    "Order: the official step updates the model first, then the CLUB networks; keras_mmsa (as its docstring "
    "reads Algorithm 1) the CLUB networks first.",
    "BERTs: the official model holds two BERTs (`encoder_l`'s for z^L and the WSA-BERT for z^y, both "
    "trained); keras_mmsa's one WSA-BERT, z^L from an LSTM over the WSA-BERT's token states before the "
    "injection. The official `encoder_l` BERT is called without an attention mask (it attends to the "
    "padding tokens).",
    "Lengths: the official model reads no lengths: its audio/vision LSTM encoders (an LSTMCell stepped in a "
    "Python loop) run over all 375 / 500 padded frames, WSA attends to the padding, the reconstruction losses "
    "cover the padding and the text decoder all 50 positions; keras_mmsa masks by the lengths (packed LSTMs "
    "over the valid frames, masked losses). Both read the same unaligned tensors.",
    "Sizes: official audio/vision encoders LSTM 64, decoders LSTM 128 (z^y + z^m wide), 6 CLUB networks "
    "(hidden 16) over latent pairs only; keras_mmsa (MOSI preset) audio/vision LSTM 32, text LSTM 64, "
    "decoders 64, 9 CLUB networks (hidden 32: the 6 latent pairs and 3 on input summaries). Both reconstruct "
    "the text as logits over the whole vocabulary.",
    "Optimizers: official AdamW (weight decay 0.01, none on biases/LayerNorm) over the whole model with the "
    "linear warm-up scheduler, Adam over the CLUB networks; keras_mmsa AdamW + LinearWarmup on BERT, Adam on "
    "the rest, Adam on the CLUB networks.",
]


@dataclasses.dataclass(frozen=True)
class Settings(tc.JsonSettings):
    """Measurement settings shared by every case of a run (`num_train`, `epochs`: the warm-up schedule's
    length, as a MOSI run has it)."""

    shapes: Shapes = Shapes()
    warmup: int = 1
    repeats: int = 5
    num_batches: int = 4
    num_train: int = MOSI_TRAIN_EXAMPLES
    epochs: int = 100
    seed: int = 0

    def total_steps(self, batch_size):
        return math.ceil(self.num_train / batch_size) * self.epochs


def make_batches(case, settings):
    """The case's numpy batches `(inputs, label)` (`synthetic_batches`, the case's vocabulary)."""
    return synthetic_batches(
        settings.num_batches,
        case.batch_size,
        settings.shapes,
        vocabulary_size(case.backbone),
        seed=settings.seed,
    )


def build_model(case, settings):
    """keras_mmsa's MIRD with the MOSI preset on the case's BERT, built and compiled (no XLA)."""
    import keras

    from keras_mmsa.models import MIRD

    keras.utils.set_random_seed(settings.seed)
    backbone = tc.text_backbone(case.backbone, settings.seed)
    preset = MIRD.preset("mosi")
    s = settings.shapes
    model = MIRD(backbone, audio_dim=s.audio_dim, vision_dim=s.vision_dim, **preset["model"])
    model.build(tc.input_shapes(s))
    optimizers = model.optimizers_for(preset["train"], settings.total_steps(case.batch_size))
    model.compile(optimizers=optimizers, jit_compile=case.jit_compile)
    return model


def measure_case(case, settings=Settings(), log=None):
    """Times `case` on the Keras side in this process; returns a result dict."""
    import tensorflow as tf

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model = build_model(case, settings)
    build_s = time.perf_counter() - t0
    rss_built = peak_rss_mb()
    raw = make_batches(case, settings)
    batches = [({k: tf.constant(v) for k, v in x.items()}, tf.constant(y)) for x, y in raw]
    club = model.variable_groups()["club"]
    club_before = [np.array(v) for v in club]
    calls = []

    def iteration(i):
        x, y = batches[i % len(batches)]
        calls.append(i)
        return model.train_on_batch(x, y, return_dict=True)

    timed = common.time_iterations(
        iteration, warmup=settings.warmup, repeats=settings.repeats, log=log, label=case.label
    )
    club_steps = int(model.stage_optimizers["club"].iterations)
    model_steps = int(model.stage_optimizers["main"].iterations)
    return tc.timing_result(
        case,
        "keras_mmsa MIRD",
        timed,
        build_s,
        rss_built,
        load_before,
        clubs_trained=any(not np.allclose(b, np.array(v)) for b, v in zip(club_before, club)),
        # T' CLUB updates and one model update per iteration
        club_updates_per_iteration=club_steps / len(calls),
        model_updates_per_iteration=model_steps / len(calls),
        parameters=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        club_parameters=int(sum(np.prod(v.shape) for v in club)),
    )


def _worker(argv):
    """A case's subprocess: `python benchmarks/mird_throughput.py --worker CASE SETTINGS OUT`."""
    tc.worker(argv, Settings, measure_case)


def run_case_isolated(case, settings=Settings(), timeout=None):
    """The Keras side of `case` in a fresh Python process (its own peak RSS)."""
    return tc.run_case_isolated(__file__, case, settings, f"Keras MIRD {case.label!r}", timeout)


def run_torch(case, settings, torch_python, mird_src, threads=0, timeout=None):
    """Times the official MIRD code (`torch_mird.py`, with `torch_python`) on the case's batches."""
    return tc.run_reference(
        torch_python,
        TORCH_SCRIPT,
        lambda path: save_batches(make_batches(case, settings), path),
        settings,
        case.backbone,
        threads,
        f"official MIRD ({case.backbone} B={case.batch_size})",
        timeout,
        flags=(
            "--mird-src",
            str(mird_src),
            "--num-train-steps",
            str(settings.num_train // case.batch_size * settings.epochs),
        ),
    )


def markdown_table(results, references, meta):
    """The report as markdown: one row per configuration with both sides and their ratios, the PyTorch side's
    split, the differences, the patches of the official code and the checks."""
    lines = tc.markdown_head(
        "MIRD training throughput: keras_mmsa vs the official MIRD PyTorch code",
        meta,
        meta.get("torch_versions")
        or ("no result (see below)" if meta.get("torch_failures") else "not run"),
    )
    lines += [
        "One iteration = one MIRD training step of Algorithm 1 on one batch: T' = 5 CLUB-network updates and "
        "one model update (forward, all losses, backward, optimizer steps). keras_mmsa: `MIRD.train_on_batch` "
        "(MOSI preset, no XLA: `MIRD.xla_train_step` is False); official: `run_training_recon_mim.train_epoch` "
        "(github.com/qianfan1996/MIRD) over a loader of that one batch, its own flags at their defaults but for "
        "the sizes of the data and BERT. Random-weight BERTs (tiny: 2 layers x 64 and the toolkit's vocabulary; "
        "base: bert-base-uncased's sizes, vocabulary 30522), MOSI-unaligned batches (text 50, audio 375x5, "
        "vision 500x20, MOSI-like lengths), the same .npz read by both sides. Times: median over "
        f"{meta['repeats_text']} timed iterations after {meta['warmup_text']} warm-up iteration(s), the first "
        "iteration excluded. Peak RSS: `ru_maxrss` of a fresh process per configuration and side. `x torch` = "
        "Keras samples/s / PyTorch samples/s (> 1: Keras faster), against the faster of the PyTorch thread "
        "counts; `RSS x torch` = Keras peak RSS / PyTorch peak RSS. The PyTorch runs of a configuration come "
        "right before its Keras run.",
        "",
    ]
    lines += tc.comparison_table(results, references, "Keras trace s")
    if references:
        lines += [
            "",
            "PyTorch side, every run (median s): the model update / the 5 CLUB updates (each a full forward "
            "and backward pass of the model) / the iteration; threads.",
            "",
            "| configuration | model update | 5 CLUB updates | iteration (IQR) | samples/s | peak RSS MiB "
            "| threads |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in references:
            mark = "" if t.get("is_reference", True) else " (slower: not the reference)"
            lines.append(
                f"| {t['backbone']} B={t['batch_size']}{mark} | {t['model_update_s']['median']:.3f} "
                f"| {t['club_updates_s']['median']:.3f} | {t['iteration_s']['median']:.3f} "
                f"({t['iteration_s']['iqr']:.3f}) | {_fmt(t['samples_per_s'], 2)} "
                f"| {_fmt(t['peak_rss_mb'], 0)} | {t['threads']} |"
            )
    sizes = {}
    for r in results:
        sizes.setdefault(
            f"keras_mmsa {r['backbone']}",
            f"{r['parameters'] / 1e6:.2f}M trainable + CLUB {r['club_parameters'] / 1e3:.1f}k",
        )
    for t in references:
        sizes.setdefault(
            f"official {t['backbone']}",
            f"{t['parameters'] / 1e6:.2f}M + CLUB {t['club_parameters'] / 1e3:.1f}k",
        )
    lines += ["", "Parameters: " + "; ".join(f"{k} {v}" for k, v in sizes.items()) + "."]
    lines += ["", "## What differs between the two steps", ""]
    lines += [f"- {d}" for d in DIFFERENCES]
    if references:
        flags = {}
        for t in references:
            flags.setdefault(
                f"{t['backbone']} B={t['batch_size']}", " ".join(t.get("official_argv", []))
            )
        lines += [
            "",
            "## Patches of the official code (applied at run time by `benchmarks/torch_mird.py`; the "
            "official files are not modified)",
            "",
            "Official flags passed (every other flag at its default): "
            + "; ".join(f"{k}: `{v}`" for k, v in flags.items())
            + ".",
            "",
        ]
        lines += [f"- **{p['patch']}**: {p['why']}." for p in references[0].get("patches", [])]
    checks = [
        f"{r['label']}: Keras losses finite {r.get('finite_losses')}, CLUB networks trained "
        f"{r.get('clubs_trained')}, {r.get('club_updates_per_iteration'):g} CLUB / "
        f"{r.get('model_updates_per_iteration'):g} model updates per iteration"
        for r in results
    ] + [
        f"torch {t['backbone']} B={t['batch_size']} {t['threads']} thread(s): finite "
        f"{t.get('finite_losses')}, CLUB networks trained {t.get('clubs_trained')}"
        for t in references
    ]
    lines += ["", "## Checks", "", "; ".join(checks) + "."]
    return "\n".join(lines + tc.markdown_tail(meta))


_versions = tc.versions  # (tests replace it)


def run_benchmark(
    cases,
    settings_for=lambda backbone: Settings(),
    out_dir=None,
    torch_python=None,
    mird_src=None,
    torch_threads=(1, 2),
    timeout=3600,
    torch_timeout=None,
    isolate=True,
    command="",
    notes="",
    log=print,
):
    """For each case: the official code (each of `torch_threads`; the fastest is the reference of the
    ratios), then the Keras side; writes `mird.json` and `mird.md` into `out_dir` (None: nothing) after every
    case. `timeout`: seconds per subprocess; `torch_timeout` (default `timeout`) for the PyTorch ones: a run
    past it is recorded under `torch_failures`.

    Returns `{"meta": ..., "results": [...], "torch_reference": [...]}` (also the JSON written).
    """
    load_before = os.getloadavg()[0]
    results, references, failures = [], [], []
    report = _report(
        cases, settings_for, results, references, failures, load_before, command, notes
    )
    for case in cases:
        s = settings_for(case.backbone)
        if torch_python and mird_src:
            references += tc.reference_runs(
                case,
                torch_threads,
                functools.partial(run_torch, case, s, torch_python, mird_src),
                torch_timeout or timeout,
                failures,
                log,
                name="official MIRD",
                zero_threads="0",
                errors=(subprocess.TimeoutExpired, RuntimeError),
                no_result=lambda exc: f"no result: {str(exc).splitlines()[0]}",
                digits=2,
            )
        log(f"Keras MIRD {case.label} ...")
        r = run_case_isolated(case, s, timeout) if isolate else measure_case(case, s)
        log(tc.keras_summary(r, 2, "trace"))
        results.append(r)
        report = _report(
            cases, settings_for, results, references, failures, load_before, command, notes
        )
        if out_dir is not None:  # after every case: a run stopped early keeps what it measured
            tc.write_report(report, out_dir, JSON_NAME, MD_NAME, markdown_table)
    return report


def _report(cases, settings_for, results, references, failures, load_before, command, notes):
    return tc.report(
        cases,
        settings_for,
        results,
        references,
        failures,
        load_before,
        _versions,
        differences=DIFFERENCES,
        command=command,
        notes=notes,
    )


def default_cases(quick=False, backbones=BACKBONES, batch_sizes=BATCH_SIZES):
    """Every backbone x batch size, no XLA, batch size by batch size (tiny then base at each); quick: tiny,
    B = 32."""
    if quick:
        backbones, batch_sizes = ("tiny",), (32,)
    return [Case(bb, b, False) for b in batch_sizes for bb in backbones]


def parser():
    p = argparse.ArgumentParser(
        prog="mird_throughput.py",
        description=__doc__.split("\nOne iteration")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="benchmarks/results/training")
    p.add_argument(
        "--quick", action="store_true", help="tiny BERT, B = 32 only, 2 timed iterations"
    )
    tc.add_case_flags(p, BACKBONES, BATCH_SIZES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-python", default=None, help="a Python with torch and transformers")
    p.add_argument("--mird-src", default=None, help="a copy of github.com/qianfan1996/MIRD")
    p.add_argument(
        "--torch-threads",
        nargs="+",
        type=int,
        default=[1, 2],
        help="torch thread counts to time (0 = torch's default); the fastest is the reference",
    )
    p.add_argument("--timeout", type=int, default=3600, help="seconds per subprocess")
    p.add_argument(
        "--torch-timeout",
        type=int,
        default=None,
        help="seconds per PyTorch subprocess (default --timeout); one past it is listed as without result",
    )
    return tc.add_report_flags(p)


@common.one_line_errors
def main(argv=None):
    args = parser().parse_args(argv)
    common.set_environment()
    if bool(args.torch_python) != bool(args.mird_src):
        raise ValueError("--torch-python and --mird-src go together (the official code's copy)")
    cases = default_cases(args.quick, tuple(args.backbones), tuple(args.batch_sizes))

    def settings_for(backbone):
        # a BERT-base step takes seconds (the official one a minute or more) on 2 cores: 3 timed, and the
        # first iteration is the only warm-up
        repeats = args.repeats or (2 if args.quick else 3 if backbone == "base" else 5)
        warmup = args.warmup if args.warmup is not None else (0 if backbone == "base" else 1)
        return Settings(warmup=warmup, repeats=repeats, seed=args.seed)

    start = time.perf_counter()
    report = run_benchmark(
        cases,
        settings_for,
        out_dir=args.out,
        torch_python=args.torch_python,
        mird_src=args.mird_src,
        torch_threads=tuple(args.torch_threads),
        timeout=args.timeout,
        torch_timeout=args.torch_timeout,
        command=common.command_line("mird_throughput.py", argv),
        notes=args.notes,
        log=lambda msg: print(msg, flush=True),
    )
    tc.finished(report, args.out, JSON_NAME, start)
    return 0


if __name__ == "__main__":
    tc.script_entry(_worker, main)
