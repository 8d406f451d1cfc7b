"""Self-MM training throughput and peak memory, against MMSA's PyTorch Self-MM on the same batches (issue 12).

    python benchmarks/self_mm_throughput.py --torch-python PATH/TO/torch-venv/bin/python   # tiny + base, B 16/32
    python benchmarks/self_mm_throughput.py --quick --torch-python PATH --out OUT_DIR       # tiny only, minutes

Writes self_mm.json and self_mm.md into --out (default benchmarks/results/training). The reference,
`torch_self_mm.py` beside this file, runs mmsa 2.2.1's `SELF_MM` model and its trainer's per-batch methods in
its own environment (see its docstring and `torch_reference.py`'s for the install commands); without
--torch-python the ratios are left out.

One iteration = one training step of Self-MM on one batch, past the first epoch so that label generation runs:
forward, the weighted L1 loss over the multimodal task and the text/audio/vision subtasks with the labels of
the label memory, backward, optimizer step, and the memory updates (unimodal labels from the class centres,
feature memory, centres). Keras: `SelfMM.train_on_batch` with `epoch_counter` = 2 (`set_epoch(2)`); PyTorch:
the body of mmsa's `do_train` loop with `epochs` = 2. Neither accumulates gradients (mmsa's trainer steps once
per `update_epochs` = 4 batches; keras_mmsa's `SelfMM` does not reproduce that; the reference here steps every
batch too). Both sides compute the same network: mmsa's MOSI `self_mm` settings (audio LSTM 5 -> 16 -> 16,
vision LSTM 20 -> 32 -> 32, ReLU post-fusion 128, post text/audio/vision 32/16/32 with their dropouts, H = 3,
label 0 in neither centre; Adam per group: BERT 5e-5, audio/vision 5e-3, the rest 1e-3, weight decay 1e-3,
none on BERT's biases and LayerNorm) over a BERT with random weights: "tiny" (the toolkit's 2-layer, 64-wide
BERT) or "base" (bert-base-uncased's sizes).

Batches: `training_throughput.synthetic_batches` (MOSI-unaligned shapes: 50 tokens, audio 375 x 5, vision
500 x 20, MOSI-like lengths) plus `index` (int32 [B]: distinct example indices into a train set of N = 1284
examples, MOSI's train split size; consecutive slices of one permutation, as a shuffled epoch gives them) and
labels read from one label array of the N examples (`train_labels`), with which both sides' label memories are
initialised (mmsa: `init_labels` over the train set; keras_mmsa: the memory as epoch 1 leaves it). Each
configuration runs in a fresh process (`ru_maxrss` is its own peak); per configuration the PyTorch run comes
right before the Keras one, so both see the same load. Machines shared with other work are noisy: read the
ratios, within one run, and the recorded load averages.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
    add_ratios,  # noqa: F401 - part of this module's interface
    vocabulary_size,
)
from benchmarks.training_throughput import (  # noqa: E402
    Shapes,
    peak_rss_mb,
    save_batches,
    synthetic_batches,
)

TORCH_SCRIPT = pathlib.Path(__file__).resolve().with_name("torch_self_mm.py")
BATCH_SIZES = (16, 32)
JSON_NAME, MD_NAME = "self_mm.json", "self_mm.md"


@dataclasses.dataclass(frozen=True)
class Settings(tc.JsonSettings):
    """Measurement settings shared by every case of a run."""

    shapes: Shapes = Shapes()
    warmup: int = 1
    repeats: int = 5
    num_batches: int = 4
    num_train: int = MOSI_TRAIN_EXAMPLES
    epoch: int = 2
    seed: int = 0


def make_batches(num_batches, batch_size, shapes=None, vocab_size=30522, num_train=1284, seed=0):
    """`(batches, train_labels)`: `synthetic_batches` (`shapes`, default MOSI's) with an int32 `index` [B] per
    batch and labels from a train set.

    `train_labels` (float32 [num_train], uniform in [-3, 3]) are the labels of the N train examples; batch k's
    `index` is slice k of one permutation of range(N) (distinct within and across batches, as one shuffled
    epoch hands them out) and its label is `train_labels[index]`.
    """
    if num_batches * batch_size > num_train:
        raise ValueError(
            f"{num_batches} batches of {batch_size} need {num_batches * batch_size} distinct examples; "
            f"the train set has {num_train}"
        )
    batches = synthetic_batches(num_batches, batch_size, shapes or Shapes(), vocab_size, seed=seed)
    rng = np.random.default_rng([seed, 12])
    train_labels = rng.uniform(-3, 3, size=num_train).astype("float32")
    order = rng.permutation(num_train).astype("int32")
    out = []
    for k, (x, _) in enumerate(batches):
        x = dict(x)
        x["index"] = order[k * batch_size : (k + 1) * batch_size].copy()
        out.append((x, train_labels[x["index"]].copy()))
    return out, train_labels


def save_with_train_labels(batches, train_labels, path):
    """`save_batches`' `.npz` plus the array `train_labels` [N] (the torch side initialises its memories from it)."""
    save_batches(batches, path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["train_labels"] = np.asarray(train_labels, "float32")
    np.savez(path, **arrays)


def build_model(case, settings, train_labels):
    """keras_mmsa's SelfMM with the MOSI preset on the case's BERT, built, compiled, memories as after epoch 1."""
    import keras

    from keras_mmsa.models import BertLSTMMLP, SelfMM

    keras.utils.set_random_seed(settings.seed)
    backbone = tc.text_backbone(case.backbone, settings.seed)
    preset = SelfMM.preset("mosi")
    own = SelfMM.own_keys()
    s = settings.shapes
    base = BertLSTMMLP(
        backbone,
        audio_dim=s.audio_dim,
        vision_dim=s.vision_dim,
        **{k: v for k, v in preset["model"].items() if k not in own},
    )
    model = SelfMM(
        base,
        num_train_examples=settings.num_train,
        **{k: v for k, v in preset["model"].items() if k in own},
    )
    model.build(tc.input_shapes(s))
    model.compile(
        optimizers=SelfMM.optimizers_from_settings(preset["train"]), jit_compile=case.jit_compile
    )
    # After epoch 1 every row of the label memory holds (y_m, y_m, y_m, y_m) (mmsa: init_labels).
    labels = np.asarray(train_labels, "float32")[:, None]
    model.label_memory.assign(np.repeat(labels, model.label_memory.shape[1], axis=1))
    model.set_epoch(settings.epoch)
    return model


def measure_case(case, settings=Settings(), log=None):
    """Times `case` on the Keras side in this process; returns a result dict."""
    import tensorflow as tf

    load_before = os.getloadavg()
    raw, train_labels = make_batches(
        settings.num_batches,
        case.batch_size,
        settings.shapes,
        vocabulary_size(case.backbone),
        settings.num_train,
        settings.seed,
    )
    t0 = time.perf_counter()
    model = build_model(case, settings, train_labels)
    build_s = time.perf_counter() - t0
    rss_built = peak_rss_mb()
    batches = [({k: tf.constant(v) for k, v in x.items()}, tf.constant(y)) for x, y in raw]

    def iteration(i):
        x, y = batches[i % len(batches)]
        return model.train_on_batch(x, y, return_dict=True)

    timed = common.time_iterations(
        iteration, warmup=settings.warmup, repeats=settings.repeats, log=log, label=case.label
    )
    text_labels = np.asarray(model.generated_labels()["text"])
    return tc.timing_result(
        case,
        "keras_mmsa SelfMM",
        timed,
        build_s,
        rss_built,
        load_before,
        labels_updated=bool(np.any(text_labels != train_labels)),
    )


def _worker(argv):
    """A case's subprocess: `python benchmarks/self_mm_throughput.py --worker CASE SETTINGS OUT`."""
    tc.worker(argv, Settings, measure_case)


def run_case_isolated(case, settings=Settings(), timeout=None):
    """The Keras side of `case` in a fresh Python process (its own peak RSS)."""
    return tc.run_case_isolated(__file__, case, settings, f"Keras SelfMM {case.label!r}", timeout)


def run_torch(
    backbone, batch_size, settings=Settings(), torch_python="python", threads=0, timeout=None
):
    """Times mmsa's PyTorch Self-MM (`torch_self_mm.py`) with `torch_python` on the same batches."""

    def write(path):
        batches, train_labels = make_batches(
            settings.num_batches,
            batch_size,
            settings.shapes,
            vocabulary_size(backbone),
            settings.num_train,
            settings.seed,
        )
        save_with_train_labels(batches, train_labels, path)

    return tc.run_reference(
        torch_python,
        TORCH_SCRIPT,
        write,
        settings,
        backbone,
        threads,
        f"PyTorch Self-MM ({backbone} B={batch_size})",
        timeout,
        flags=("--epoch", str(settings.epoch)),
    )


def markdown_table(results, references, meta):
    """The report as markdown: one row per (backbone, batch size) with both sides and their ratios."""
    lines = tc.markdown_head(
        "Self-MM training throughput: keras_mmsa vs mmsa's PyTorch SELF_MM",
        meta,
        meta.get("torch_versions") or "not run",
    )
    lines += [
        "One iteration = one Self-MM training step on one batch at epoch 2 (label generation on): forward, "
        "weighted L1 over M/T/A/V with the label memory's labels, backward, optimizer step, label / feature / "
        "centre memory updates; no gradient accumulation on either side (mmsa's trainer steps once per 4 "
        "batches; here both step every batch). mmsa's MOSI `self_mm` settings on both sides, random-weight "
        "BERT (tiny: 2 layers x 64; base: bert-base-uncased's sizes), MOSI-unaligned batch shapes (text 50, "
        f"audio 375x5, vision 500x20, MOSI-like lengths), train set N = {meta['num_train']}. Times: median over "
        f"{meta['repeats_text']} timed iterations after {meta['warmup_text']} warm-up iteration(s), the first "
        "(compiling) iteration excluded. Peak RSS: `ru_maxrss` of a fresh process per configuration and side. "
        "`x torch` = Keras samples/s / PyTorch samples/s (> 1: Keras faster); `RSS x torch` = Keras peak RSS / "
        "PyTorch peak RSS. Same run, same batches; the PyTorch side of a configuration runs right before its "
        "Keras side.",
        "",
    ]
    lines += tc.comparison_table(results, references, "Keras compile s")
    if references:
        lines += [
            "",
            "PyTorch side, per part of the iteration (median s): forward + loss + backward / label, feature and "
            "centre updates / optimizer step; threads.",
            "",
            "| configuration | forward+backward | ULGM updates | step | threads |",
            "|---|---|---|---|---|",
        ]
        for t in references:
            mark = "" if t.get("is_reference", True) else " (not the reference: slower)"
            lines.append(
                f"| {t['backbone']} B={t['batch_size']}{mark} | {t['forward_backward_s']['median']:.3f} "
                f"| {t['ulgm_s']['median']:.4f} | {t['step_s']['median']:.3f} | {t['threads']} |"
            )
    checks = [
        f"{r['label']}: Keras labels updated {r.get('labels_updated')}, finite {r.get('finite_losses')}"
        for r in results
    ] + [
        f"torch {t['backbone']} B={t['batch_size']} {t['threads']} thread(s): labels updated "
        f"{t.get('labels_updated')}, "
        f"finite {t.get('finite_losses')}"
        for t in references
    ]
    lines += [
        "",
        "Checks (the label generation ran on both sides, losses finite): "
        + "; ".join(checks)
        + ".",
    ]
    return "\n".join(lines + tc.markdown_tail(meta))


_versions = tc.versions  # (tests replace it)


def run_benchmark(
    cases,
    settings_for=lambda backbone: Settings(),
    out_dir=None,
    torch_python=None,
    torch_threads=(0,),
    timeout=3600,
    isolate=True,
    command="",
    notes="",
    log=print,
):
    """For each case: the PyTorch reference (each of `torch_threads`; the fastest is the reference of the
    ratios), then the Keras side; writes `self_mm.json` and `self_mm.md` into `out_dir` (None: nothing).

    Returns `{"meta": ..., "results": [...], "torch_reference": [...]}` (also the JSON written).
    """
    load_before = os.getloadavg()[0]
    results, references, failures = [], [], []
    for case in cases:
        s = settings_for(case.backbone)
        if torch_python:
            references += tc.reference_runs(
                case,
                torch_threads,
                functools.partial(run_torch, case.backbone, case.batch_size, s, torch_python),
                timeout,
                failures,
                log,
                name="PyTorch Self-MM",
                zero_threads="default",
                errors=(subprocess.TimeoutExpired,),
                no_result=lambda exc: f"no result within {timeout} s: skipped",
                digits=1,
            )
        log(f"Keras SelfMM {case.label} ...")
        r = run_case_isolated(case, s, timeout) if isolate else measure_case(case, s)
        log(tc.keras_summary(r, 1, "compile"))
        results.append(r)
    backbones = [bb for bb in BACKBONES if any(c.backbone == bb for c in cases)]
    report = tc.report(
        cases,
        settings_for,
        results,
        references,
        failures,
        load_before,
        _versions,
        num_train=settings_for(backbones[0] if backbones else "tiny").num_train,
        command=command,
        notes=notes,
    )
    if out_dir is not None:
        tc.write_report(report, out_dir, JSON_NAME, MD_NAME, markdown_table)
    return report


def default_cases(quick=False, backbones=BACKBONES, batch_sizes=BATCH_SIZES):
    """Every backbone x batch size with XLA; quick: tiny, B = 16 and 32."""
    if quick:
        backbones = ("tiny",)
    return [Case(bb, b, True) for bb in backbones for b in batch_sizes]


def parser():
    p = argparse.ArgumentParser(
        prog="self_mm_throughput.py",
        description=__doc__.split("\nOne iteration")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="benchmarks/results/training")
    p.add_argument("--quick", action="store_true", help="tiny BERT only, 3 repeats")
    tc.add_case_flags(p, BACKBONES, BATCH_SIZES)
    p.add_argument(
        "--num-train", type=int, default=MOSI_TRAIN_EXAMPLES, help="N, the train set size"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-jit", action="store_true", help="Keras side without XLA")
    p.add_argument("--torch-python", default=None, help="a Python with torch and mmsa 2.2.1")
    p.add_argument(
        "--torch-threads",
        nargs="+",
        type=int,
        default=[0, 1],
        help="torch thread counts to time (0 = torch's default); the fastest is the reference (on a loaded "
        "2-core machine one thread can be several times faster than two)",
    )
    p.add_argument("--timeout", type=int, default=3600, help="seconds per subprocess")
    return tc.add_report_flags(p)


@common.one_line_errors
def main(argv=None):
    args = parser().parse_args(argv)
    common.set_environment()
    cases = [
        dataclasses.replace(c, jit_compile=not args.no_jit)
        for c in default_cases(args.quick, tuple(args.backbones), tuple(args.batch_sizes))
    ]

    def settings_for(backbone):
        # BERT-base steps take seconds on a few CPU cores: 3 timed, no extra warm-up (the compiling first
        # iteration warms up)
        repeats = args.repeats or (3 if args.quick or backbone == "base" else 5)
        warmup = args.warmup if args.warmup is not None else (0 if backbone == "base" else 1)
        return Settings(warmup=warmup, repeats=repeats, num_train=args.num_train, seed=args.seed)

    start = time.perf_counter()
    report = run_benchmark(
        cases,
        settings_for,
        out_dir=args.out,
        torch_python=args.torch_python,
        torch_threads=tuple(args.torch_threads),
        timeout=args.timeout,
        command=common.command_line("self_mm_throughput.py", argv),
        notes=args.notes,
        log=lambda msg: print(msg, flush=True),
    )
    tc.finished(report, args.out, JSON_NAME, start)
    return 0


if __name__ == "__main__":
    tc.script_entry(_worker, main)
