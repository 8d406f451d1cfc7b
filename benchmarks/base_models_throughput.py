"""Training throughput and peak memory of the base models, against THUIAR's PyTorch ports (issue 14).

    python benchmarks/base_models_throughput.py --torch-python PATH/TO/torch-venv/bin/python
    python benchmarks/base_models_throughput.py --quick --out OUT_DIR        # B=8, 2 repeats, no reference

Writes base_models.json and base_models.md into --out (default benchmarks/results/training). The reference,
`torch_base_models.py` beside this file, runs mmsa 2.2.1's TFN / LMF / MFN / EF_LSTM / BERT_MAG in its own
environment (see its docstring) on the same batches; without --torch-python the ratios are left out.

One iteration = one training step of the base model alone on one batch (forward, task loss, backward, optimizer
step), with the model's MOSI preset on both sides (keras_mmsa's presets are mmsa's `config_regression.json`
values). Batches are synthetic, MOSI-shaped (`training_throughput.synthetic_batches`: 50 tokens, MOSI-like
lengths): unaligned (audio 375 x 5, vision 500 x 20) for TFN and LMF, word-aligned (audio 50 x 5, vision 50 x 20,
one frame per token) for EF-LSTM, MFN and MAG-BERT, as each model's data is.

Text: mmsa feeds TFN, LMF, MFN and EF-LSTM the 768-d BERT token features of its pickles; keras_mmsa's models
read a frozen KerasHub backbone, whose output the workflow computes once and feeds as `text_features`
(`keras_mmsa.data` text-feature cache). The `cached` rows feed the same random 768-d features to both sides (the
same work); the `frozen BERT` rows run the frozen BERT-base forward inside every step (what an uncached run
costs). MAG-BERT fine-tunes its BERT on both sides: the sizes of `--mag-bert` (default the toolkit's tiny BERT
shape: 64 hidden, 2 layers; `base` = bert-base-uncased's), random weights, no download.

Each configuration runs in a fresh process (`ru_maxrss` is its own peak), like `training_throughput.py`. With
`--jax-python` (a Python with jax and this package's requirements) every configuration runs a second time on the
JAX trainer (`Case.backend="jax"`, its subprocess under KERAS_BACKEND=jax, XLA), on the same batches, and the
report adds a three-column table: TensorFlow trainer, JAX trainer, PyTorch reference (`--name` names the output
files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.training_throughput import (  # noqa: E402
    BASE_BERT,
    Shapes,
    peak_rss_mb,
    synthetic_batches,
)

TORCH_SCRIPT = pathlib.Path(__file__).resolve().with_name("torch_base_models.py")
# keras_mmsa method name -> (mmsa model name, word-aligned inputs)
MODELS = {
    "tfn": ("tfn", False),
    "lmf": ("lmf", False),
    "ef_lstm": ("ef_lstm", True),
    "mfn": ("mfn", True),
    "mag_bert": ("bert_mag", True),
}
TEXT = ("cached", "frozen_bert")
TRAINER_BACKENDS = ("tensorflow", "jax")
TINY_BERT = dict(
    vocabulary_size=1000,
    num_layers=2,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    dropout=0.1,
    max_sequence_length=512,
)
MAG_BERT_SIZES = {"tiny": TINY_BERT, "base": BASE_BERT}


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: `model` (a key of MODELS), `text` ("cached" or "frozen_bert"; MAG-BERT: the size of its
    fine-tuned BERT, "tiny" or "base"), batch size, XLA, the Keras backend (the trainer: "tensorflow" or "jax",
    XLA only)."""

    model: str
    text: str = "cached"
    batch_size: int = 32
    jit_compile: bool = True
    backend: str = "tensorflow"

    def __post_init__(self):
        if self.backend not in TRAINER_BACKENDS:
            raise ValueError(
                f"Case.backend must be one of {TRAINER_BACKENDS}; got {self.backend!r}"
            )
        if self.backend == "jax" and not self.jit_compile:
            raise ValueError("Case.backend='jax' is measured with XLA only (jit_compile=True)")

    @property
    def label(self):
        jax = "" if self.backend == "tensorflow" else f", {self.backend}"
        return f"{self.model} ({self.text}) B={self.batch_size} {'xla' if self.jit_compile else 'no-xla'}{jax}"


def _bert_sizes(case):
    return MAG_BERT_SIZES[case.text] if case.model == "mag_bert" else BASE_BERT


def make_batches(case, num_batches=3, seed=0):
    """Numpy batches for `case`: MOSI-shaped, word-aligned for the aligned models, 768-d `text_features`."""
    aligned = MODELS[case.model][1]
    shapes = Shapes(audio_len=50, vision_len=50) if aligned else Shapes()
    sizes = _bert_sizes(case)
    batches = synthetic_batches(
        num_batches, case.batch_size, shapes, sizes["vocabulary_size"], seed=seed
    )
    rng = np.random.default_rng(seed + 1)
    for x, _ in batches:
        mask = x["padding_mask"]
        if aligned:  # one frame per real token, zeros elsewhere; lengths = token count
            tokens = mask.sum(axis=1).astype("int32")
            for m in ("audio", "vision"):
                x[m] = x[m] * mask[..., None]
                x[f"{m}_lengths"] = tokens
        if case.model != "mag_bert":
            x["text_features"] = (
                rng.normal(size=mask.shape + (BASE_BERT["hidden_dim"],)).astype("float32")
                * mask[..., None]
            )
    return batches


def build_model(case, seed=0):
    """The base model with its MOSI preset over a random BERT, alone (`Supervised`), compiled."""
    import keras
    import keras_hub

    from keras_mmsa.models import Supervised
    from keras_mmsa.training import registry

    keras.utils.set_random_seed(seed)
    cls = registry.get_method(case.model)
    preset = cls.preset("mosi")
    backbone = keras_hub.models.BertBackbone(**_bert_sizes(case))
    base = cls(backbone, audio_dim=5, vision_dim=20, **preset["model"])
    model = Supervised(base)
    model.compile(
        optimizers=cls.optimizers_from_settings(preset["train"]), jit_compile=case.jit_compile
    )
    return model


def measure_case(case, warmup=1, repeats=5, seed=0):
    """Times `case` in this process, whose Keras backend must be `case.backend`."""
    import keras

    from benchmarks.training_throughput import _backend_version

    if keras.backend.backend() != case.backend:
        raise ValueError(
            f"case {case.label!r} needs KERAS_BACKEND={case.backend}; this process runs "
            f"{keras.backend.backend()} (run_case_isolated sets it)"
        )
    if case.backend == "tensorflow":
        import tensorflow as tf

        constant = tf.constant
    else:
        constant = np.asarray
    t0 = time.perf_counter()
    model = build_model(case, seed)
    build_s = time.perf_counter() - t0
    batches = []
    for x, y in make_batches(case, seed=seed):
        if case.text == "frozen_bert":
            x.pop("text_features", None)
        batches.append(({k: constant(v) for k, v in x.items()}, constant(y)))
    model.build({k: tuple(v.shape) for k, v in batches[0][0].items()})

    def iteration(i):
        x, y = batches[i % len(batches)]
        return model.train_on_batch(x, y, return_dict=True)

    logs, first, walls, cpus = common.time_iterations(iteration, warmup=warmup, repeats=repeats)
    return {
        "case": dataclasses.asdict(case),
        "label": case.label,
        "implementation": "keras_mmsa",
        "backend": case.backend,
        "backend_version": _backend_version(case.backend),
        **common.iteration_fields(case.batch_size, first, walls, cpus),
        "build_s": build_s,
        "peak_rss_mb": peak_rss_mb(),
        "finite_loss": bool(np.isfinite(float(logs["loss"]))),
        "load_average": list(os.getloadavg()),
    }


def run_case_isolated(case, warmup, repeats, seed=0, timeout=None, python=None):
    """`measure_case` in a fresh process of `python` (default this interpreter) with KERAS_BACKEND set to
    `case.backend`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=case.backend)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        spec = json.dumps([dataclasses.asdict(case), warmup, repeats, seed])
        cmd = [
            python or sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--worker",
            spec,
            out,
        ]
        return common.run_json_subprocess(
            cmd, out, f"case {case.label!r}", env=env, timeout=timeout
        )


def run_torch(case, torch_python, warmup, repeats, seed=0, threads=0, timeout=1800):
    """mmsa's port of `case.model` on the same batches (`torch_base_models.py` in `torch_python`)."""
    sizes = _bert_sizes(case)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "batches.npz")
        batches = make_batches(case, seed=seed)
        keys = list(batches[0][0])
        arrays = {k: np.stack([x[k] for x, _ in batches]) for k in keys}
        arrays["label"] = np.stack([y for _, y in batches])
        np.savez(data, **arrays)
        out = os.path.join(tmp, "result.json")
        cmd = [
            torch_python,
            str(TORCH_SCRIPT),
            "--model",
            MODELS[case.model][0],
            "--batches",
            data,
            "--bert",
            ",".join(
                str(sizes[k]) for k in ("hidden_dim", "num_layers", "num_heads", "intermediate_dim")
            ),
            "--warmup",
            str(warmup),
            "--repeats",
            str(repeats),
            "--seed",
            str(seed),
            "--threads",
            str(threads),
            "--out",
            out,
        ]
        env = dict(os.environ, TQDM_DISABLE="1")
        return common.run_json_subprocess(
            cmd, out, f"PyTorch {case.model}", env=env, timeout=timeout
        )


def default_cases(batch_size=32, models=tuple(MODELS)):
    cases = []
    for m in models:
        if m == "mag_bert":
            cases.append(Case(m, "tiny", batch_size))
        else:
            cases.append(Case(m, "cached", batch_size))
    if "tfn" in models:
        cases.append(Case("tfn", "frozen_bert", batch_size))
    return cases


def _fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def _reference_key(case_dict):
    return (case_dict["model"], case_dict["text"] if case_dict["model"] == "mag_bert" else "cached")


def three_backends_table(report):
    """Markdown rows side by side, one per configuration that has a JAX result: the TensorFlow trainer, the JAX
    trainer and mmsa's PyTorch port, each with s/iteration, samples/s and peak RSS, and the throughput ratios.
    Empty when no result ran on JAX."""
    refs = {(r["model"], r["text"]): r for r in report["torch_reference"] if r.get("is_reference")}
    on_tf = {
        (r["case"]["model"], r["case"]["text"], r["case"]["batch_size"]): r
        for r in report["results"]
        if r["case"].get("backend", "tensorflow") == "tensorflow" and r["case"]["jit_compile"]
    }
    rows = []
    for r in report["results"]:
        c = r["case"]
        if c.get("backend") != "jax":
            continue
        tf_r = on_tf.get((c["model"], c["text"], c["batch_size"]))
        ref = refs.get(_reference_key(c))
        cells = common.backend_row_cells(tf_r, r, ref, digits=4)
        rows.append(
            f"| {c['model']} ({c['text']}) B={c['batch_size']} | " + " | ".join(cells) + " |"
        )
    if not rows:
        return []
    versions = sorted({r["backend_version"] for r in report["results"] if "backend_version" in r})
    versions += sorted({f"torch {r['torch_version']}" for r in refs.values()})
    return [
        "",
        "## TensorFlow trainer, JAX trainer, PyTorch reference",
        "",
        "XLA; same batches, same run. s: seconds per training step (median); /s: samples per second; RSS: "
        "peak MiB of the configuration's own process."
        + (f" Versions: {', '.join(versions)}." if versions else ""),
        "",
        "| configuration | TF s | TF /s | TF RSS | JAX s | JAX /s | JAX RSS | torch s | torch /s | torch RSS"
        " | JAX x TF | TF x torch | JAX x torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def markdown(report):
    meta = report["meta"]
    lines = [
        "# Base models: training throughput vs mmsa's PyTorch ports",
        "",
        f"Run {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs); {meta['versions']}. "
        f"Load average (1 min) before/after: {meta['load_before']:.2f} / {meta['load_after']:.2f}.",
        "",
        "One iteration = one training step of the base model alone (forward, L1 task loss, backward, step) on "
        "one MOSI-shaped batch, MOSI presets on both sides. Median over "
        f"{meta['repeats']} iterations after {meta['warmup']} warm-up; compilation excluded (own column). "
        "`x torch` = throughput ratio to mmsa 2.2.1's port of the same model on the same batches (the fastest "
        "of its thread settings); RSS = `ru_maxrss` of a fresh process per configuration. `cached`: both "
        "sides read the 768-d text features; `frozen BERT`: keras_mmsa runs the frozen BERT-base forward in "
        "every step (an uncached run), against the same mmsa row.",
        "",
        "| configuration | iteration s | IQR s | samples/s | x torch | compile s | peak RSS MiB | RSS x torch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    refs = {(r["model"], r["text"]): r for r in report["torch_reference"] if r.get("is_reference")}
    for r in report["results"]:
        c = r["case"]
        ref = refs.get(_reference_key(c))
        ratio = rss = None
        if ref:
            ratio = r["samples_per_s"] / ref["samples_per_s"]
            rss = r["peak_rss_mb"] / ref["peak_rss_mb"]
        lines.append(
            f"| {r['label']} | {_fmt(r['iteration_s']['median'], 4)} | {_fmt(r['iteration_s']['iqr'], 4)} "
            f"| {_fmt(r['samples_per_s'], 1)} | {_fmt(ratio)} | {_fmt(r['compile_s'], 1)} "
            f"| {_fmt(r['peak_rss_mb'], 0)} | {_fmt(rss)} |"
        )
    for ref in report["torch_reference"]:
        mark = " **reference**" if ref.get("is_reference") else ""
        lines.append(
            f"| mmsa {ref['model']} ({ref['text']}) B={ref['batch_size']} torch {ref['torch_version']}, "
            f"{ref['threads']} threads{mark} | {_fmt(ref['iteration_s']['median'], 4)} "
            f"| {_fmt(ref['iteration_s']['iqr'], 4)} | {_fmt(ref['samples_per_s'], 1)} | | "
            f"| {_fmt(ref['peak_rss_mb'], 0)} | |"
        )
    lines += three_backends_table(report)
    lines += ["", meta.get("notes", ""), ""]
    return "\n".join(lines)


def run_benchmark(
    cases,
    out_dir=None,
    torch_python=None,
    torch_threads=(0, 1),
    warmup=1,
    repeats=5,
    seed=0,
    isolate=True,
    log=print,
    jax_python=None,
    name="base_models",
):
    """Measures every case and, with `torch_python`, mmsa's port of each model; writes the JSON and markdown
    (`<name>.json`, `<name>.md`). Cases on the JAX backend run with `jax_python` (default this interpreter)."""
    from benchmarks.training_throughput import _versions

    load_before = os.getloadavg()[0]
    refs = []
    if torch_python:
        done = set()
        for case in cases:
            key = _reference_key(dataclasses.asdict(case))
            if key in done:
                continue
            done.add(key)
            runs = []
            for threads in torch_threads:
                log(f"mmsa {case.model} ({key[1]}) threads={threads or 'default'} ...")
                r = run_torch(case, torch_python, warmup, repeats, seed, threads)
                r.update(model=case.model, text=key[1])
                log(f"  {r['iteration_s']['median']:.4f} s, peak RSS {r['peak_rss_mb']:.0f} MiB")
                runs.append(r)
            best = max(runs, key=lambda r: r["samples_per_s"])
            for r in runs:
                r["is_reference"] = r is best
            refs += runs
    results = []
    for case in cases:
        log(f"{case.label} ...")
        r = (
            run_case_isolated(
                case, warmup, repeats, seed, python=jax_python if case.backend == "jax" else None
            )
            if isolate
            else measure_case(case, warmup, repeats, seed)
        )
        log(
            f"  {r['iteration_s']['median']:.4f} s, compile {r['compile_s']:.1f} s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MiB"
        )
        results.append(r)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "warmup": warmup,
        "repeats": repeats,
        "notes": "",
    }
    report = {"meta": meta, "results": results, "torch_reference": refs}
    if out_dir is not None:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(report, indent=1))
        (out / f"{name}.md").write_text(markdown(report))
    return report


def parser():
    p = argparse.ArgumentParser(
        prog="base_models_throughput.py",
        description=__doc__.split("\n\nOne iteration")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="benchmarks/results/training")
    p.add_argument("--quick", action="store_true", help="B=8, 2 repeats")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mag-bert", default="tiny", choices=list(MAG_BERT_SIZES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--torch-python", default=None)
    p.add_argument("--torch-threads", nargs="+", type=int, default=[0, 1])
    p.add_argument(
        "--jax-python",
        default=None,
        help="a Python with jax and this package's requirements: every configuration also runs on the JAX "
        "trainer (KERAS_BACKEND=jax)",
    )
    p.add_argument(
        "--name", default="base_models", help="output file stem: NAME.json and NAME.md in --out"
    )
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    common.set_environment()
    batch = 8 if args.quick else args.batch_size
    repeats = 2 if args.quick else args.repeats
    cases = [
        dataclasses.replace(c, text=args.mag_bert) if c.model == "mag_bert" else c
        for c in default_cases(batch, tuple(args.models))
    ]
    if args.jax_python:
        cases += [dataclasses.replace(c, backend="jax") for c in cases if c.jit_compile]
    report = run_benchmark(
        cases,
        out_dir=args.out,
        torch_python=args.torch_python,
        torch_threads=tuple(args.torch_threads),
        warmup=args.warmup,
        repeats=repeats,
        log=lambda m: print(m, flush=True),
        jax_python=args.jax_python,
        name=args.name,
    )
    print(markdown(report))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        common.set_environment()
        case_dict, warmup, repeats, seed = json.loads(sys.argv[2])
        result = measure_case(Case(**case_dict), warmup, repeats, seed)
        pathlib.Path(sys.argv[3]).write_text(json.dumps(result))
    else:
        sys.exit(main())
