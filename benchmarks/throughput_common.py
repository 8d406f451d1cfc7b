"""What the method-vs-PyTorch training-throughput benchmarks share (`self_mm_throughput.py`, `mird_throughput.py`).

Each times one training iteration of a keras_mmsa method in a fresh worker process per configuration (its own
peak RSS) against a PyTorch reference script run with another interpreter on the same batches, and writes one
JSON and one markdown report. Here: the configuration (`Case`), the worker protocol, the runs of a reference at
several thread counts, the ratios, the report's metadata and the markdown pieces both tables have. Nothing here
imports TensorFlow or keras_mmsa at module level.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.training_throughput import BASE_BERT, Shapes, peak_rss_mb

BACKBONES = ("tiny", "base")
MOSI_TRAIN_EXAMPLES = 1284


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: the BERT's size ("tiny" or "base"), batch size, XLA on the Keras side."""

    backbone: str = "tiny"
    batch_size: int = 16
    jit_compile: bool = True

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"Case.backbone must be one of {BACKBONES}; got {self.backbone!r}")
        if self.batch_size < 1:
            raise ValueError(f"Case.batch_size must be >= 1; got {self.batch_size}")

    @property
    def label(self):
        return f"{self.backbone} B={self.batch_size} {'xla' if self.jit_compile else 'no-xla'}"


class JsonSettings:
    """`to_dict` / `from_dict` of a frozen settings dataclass with a `shapes` field (how the settings reach
    a case's worker process)."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["shapes"] = Shapes(**d.get("shapes", {}))
        return cls(**d)


def vocabulary_size(backbone):
    if backbone == "base":
        return BASE_BERT["vocabulary_size"]
    from keras_mmsa.backbones import tiny_vocabulary

    return len(tiny_vocabulary())


def text_backbone(backbone, seed):
    """A BERT with random weights: bert-base-uncased's sizes ("base") or the toolkit's tiny one."""
    import keras_hub

    from keras_mmsa import backbones

    if backbone == "base":
        return keras_hub.models.BertBackbone(**BASE_BERT)
    return backbones.tiny_text_backbone(seed=seed)[0]


def input_shapes(shapes):
    """`model.build`'s input shapes for batches of `shapes` (a `training_throughput.Shapes`)."""
    return {
        "token_ids": (None, shapes.text_len),
        "audio": (None, shapes.audio_len, shapes.audio_dim),
        "vision": (None, shapes.vision_len, shapes.vision_dim),
    }


def timing_result(case, implementation, timed, build_s, rss_built, load_before, **checks):
    """A Keras-side result dict: `timed` is `common.time_iterations`' `(logs, first, walls, cpus)`; `checks`
    (the method's own fields) come after `finite_losses`."""
    logs, first, walls, cpus = timed
    return {
        "case": dataclasses.asdict(case),
        "label": case.label,
        "implementation": implementation,
        "backbone": case.backbone,
        "batch_size": case.batch_size,
        **common.iteration_fields(case.batch_size, first, walls, cpus),
        "build_s": build_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_build_mb": rss_built,
        "finite_losses": all(math.isfinite(float(v)) for v in logs.values()),
        **checks,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def worker(argv, settings_type, measure_case):
    """A case's subprocess (`python benchmarks/<script> --worker CASE SETTINGS OUT`): measures the case and
    writes its result as JSON to OUT."""
    case = Case(**json.loads(argv[0]))
    settings = settings_type.from_dict(json.loads(argv[1]))
    pathlib.Path(argv[2]).write_text(json.dumps(measure_case(case, settings)))


def run_case_isolated(script, case, settings, what, timeout=None):
    """The Keras side of `case`: `script --worker ...` in a fresh Python process (its own peak RSS)."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [
            sys.executable,
            str(pathlib.Path(script).resolve()),
            "--worker",
            json.dumps(dataclasses.asdict(case)),
            json.dumps(settings.to_dict()),
            out,
        ]
        return common.run_json_subprocess(cmd, out, what, env=env, timeout=timeout)


def run_reference(
    torch_python, script, batches, settings, backbone, threads, what, timeout, flags=()
):
    """Runs the PyTorch script `script` with `torch_python` on `batches` (the .npz path is given to
    `batches(path)` to write) with the timing flags of `settings` and the script's own `flags`; returns its
    result."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "batches.npz")
        batches(data)
        out = os.path.join(tmp, "result.json")
        cmd = [
            torch_python,
            str(script),
            "--backbone",
            backbone,
            "--batches",
            data,
            "--warmup",
            str(settings.warmup),
            "--repeats",
            str(settings.repeats),
            "--seed",
            str(settings.seed),
            "--vocab-size",
            str(vocabulary_size(backbone)),
            *flags,
            "--threads",
            str(threads),
            "--out",
            out,
        ]
        env = dict(os.environ, TQDM_DISABLE="1")
        return common.run_json_subprocess(cmd, out, what, env=env, timeout=timeout)


def reference_runs(
    case,
    torch_threads,
    run,
    timeout,
    failures,
    log,
    *,
    name,
    zero_threads,
    errors,
    no_result,
    digits,
):
    """Runs the PyTorch reference `name` of `case` once per thread count (`run(threads, timeout)`) and marks
    the fastest run `is_reference`; returns the runs. A run that raises one of `errors` is logged (`no_result(exc)`) and
    listed in `failures`. Logged: thread count 0 as `zero_threads`; samples/s with `digits` digits."""
    runs = []
    for threads in torch_threads:
        log(f"{name} {case.backbone} B={case.batch_size} threads={threads or zero_threads} ...")
        try:
            t = run(threads, timeout)
        except errors as exc:
            log(f"  {no_result(exc)}")
            failures.append(
                {"backbone": case.backbone, "batch_size": case.batch_size, "threads": threads}
            )
            continue
        log(
            f"  {t['iteration_s']['median']:.3f} s/batch, {t['samples_per_s']:.{digits}f} samples/s,"
            f" peak RSS {t['peak_rss_mb']:.0f} MiB"
        )
        runs.append(t)
    if runs:
        best = max(runs, key=lambda r: r["samples_per_s"])
        for t in runs:
            t["is_reference"] = t is best
    return runs


def keras_summary(r, digits, compile_word):
    """The line logged after a Keras run."""
    return (
        f"  {r['iteration_s']['median']:.3f} s/batch (IQR {r['iteration_s']['iqr']:.3f}),"
        f" {r['samples_per_s']:.{digits}f} samples/s, {compile_word} {r['compile_s']:.1f} s,"
        f" peak RSS {r['peak_rss_mb']:.0f} MiB"
    )


def add_ratios(results, references):
    """Adds to each Keras result with a reference of the same backbone and batch size: `vs_torch` (throughput /
    the reference's: > 1 = Keras faster) and `rss_vs_torch` (peak RSS / the reference's)."""
    ref = _references(references)
    for r in results:
        t = ref.get((r["backbone"], r["batch_size"]))
        if t is not None:
            r["vs_torch"] = r["samples_per_s"] / t["samples_per_s"]
            r["rss_vs_torch"] = r["peak_rss_mb"] / t["peak_rss_mb"]
    return results


def _references(references):
    return {(r["backbone"], r["batch_size"]): r for r in references if r.get("is_reference", True)}


def versions():
    import keras
    import keras_hub
    import tensorflow as tf

    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, KerasHub {keras_hub.__version__}"
    )


def torch_versions(references):
    """The PyTorch side's versions (of the first run; mmsa's where it reports one); "" without runs."""
    if not references:
        return ""
    t = references[0]
    text = f"torch {t['torch_version']}, transformers {t['transformers_version']}"
    if "mmsa_version" in t:
        text += f", mmsa {t['mmsa_version']}"
    return text


def per_backbone_text(values):
    if len(set(values.values())) <= 1:
        return str(next(iter(values.values()), ""))
    return " / ".join(f"{v} ({bb})" for bb, v in values.items())


def report(cases, settings_for, results, references, failures, load_before, versions, **extra):
    """`{"meta": ..., "results": ..., "torch_reference": ...}` with the ratios added (`versions()`: the Keras
    side's versions). `extra` meta fields, in their order: `num_train` (after the load averages), the others
    (`differences`, `command`, `notes`) after the failures."""
    add_ratios(results, references)
    backbones = [bb for bb in BACKBONES if any(c.backbone == bb for c in cases)]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "torch_versions": torch_versions(references),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    if "num_train" in extra:
        meta["num_train"] = extra.pop("num_train")
    meta |= {
        "settings": {bb: settings_for(bb).to_dict() for bb in backbones},
        "repeats_text": per_backbone_text({bb: settings_for(bb).repeats for bb in backbones}),
        "warmup_text": per_backbone_text({bb: settings_for(bb).warmup for bb in backbones}),
        "torch_failures": failures,
        **extra,
    }
    return {"meta": meta, "results": results, "torch_reference": references}


def write_report(report, out_dir, json_name, md_name, markdown_table):
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / json_name).write_text(json.dumps(report, indent=1))
    (out / md_name).write_text(
        markdown_table(report["results"], report["torch_reference"], report["meta"])
    )


def fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def markdown_head(title, meta, torch_side):
    """The report's title, run line (`torch_side`: what it says of the PyTorch side) and load line."""
    return [
        f"# {title}",
        "",
        f"Run {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs); {meta['versions']}; "
        f"PyTorch side: {torch_side}.",
        f"Load average (1 min) before/after the run: {meta['load_before']:.2f} / {meta['load_after']:.2f}.",
        "",
    ]


def comparison_table(results, references, compile_column):
    """One row per Keras result with its reference and their ratios (`compile_column`: the last header)."""
    refs = _references(references)
    lines = [
        "| configuration | Keras s/batch (IQR) | PyTorch s/batch (IQR) | Keras samples/s | PyTorch samples/s "
        f"| x torch | Keras peak RSS MiB | PyTorch peak RSS MiB | RSS x torch | {compile_column} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = refs.get((r["backbone"], r["batch_size"]))
        torch_s = torch_sps = torch_rss = ""
        if t is not None:
            torch_s = f"{t['iteration_s']['median']:.3f} ({t['iteration_s']['iqr']:.3f})"
            torch_sps = fmt(t["samples_per_s"], 1)
            torch_rss = fmt(t["peak_rss_mb"], 0)
        lines.append(
            f"| {r['label']} | {r['iteration_s']['median']:.3f} ({r['iteration_s']['iqr']:.3f}) | {torch_s} "
            f"| {fmt(r['samples_per_s'], 1)} | {torch_sps} | {fmt(r.get('vs_torch'))} "
            f"| {fmt(r['peak_rss_mb'], 0)} | {torch_rss} | {fmt(r.get('rss_vs_torch'))} "
            f"| {fmt(r['compile_s'], 1)} |"
        )
    return lines


def markdown_tail(meta):
    """The failed PyTorch runs, the command and the notes, and the final newline."""
    lines = []
    if meta.get("torch_failures"):
        lines += ["", f"PyTorch runs with no result: {meta['torch_failures']}."]
    if meta.get("command"):
        lines += ["", f"Command: `{meta['command']}`"]
    if meta.get("notes"):
        lines += ["", meta["notes"]]
    lines.append("")
    return lines


def add_case_flags(p, backbones, batch_sizes):
    """--backbones, --batch-sizes, --repeats, --warmup."""
    p.add_argument("--backbones", nargs="+", default=list(backbones), choices=backbones)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=list(batch_sizes))
    p.add_argument(
        "--repeats", type=int, default=None, help="timed iterations (default tiny 5, base 3)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="warm-up iterations (default tiny 1, base 0)"
    )
    return p


def add_report_flags(p):
    """--notes, --debug."""
    p.add_argument("--notes", default="", help="free text appended to the markdown")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def script_entry(worker_main, main):
    """`python benchmarks/<script>`: the worker of one case (`--worker ...`) or the benchmark."""
    if sys.argv[1:2] == ["--worker"]:
        common.set_environment()
        worker_main(sys.argv[2:])
    else:
        sys.exit(main())


def finished(report, out, json_name, start):
    """The last line a benchmark prints."""
    print(
        f"wrote {len(report['results'])} configurations to {os.path.join(out, json_name)}"
        f" in {time.perf_counter() - start:.0f}s"
    )
