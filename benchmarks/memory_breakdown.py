"""Where MMIM's peak training memory goes, phase by phase, beside the PyTorch reference's (issue 16, item 3).

    python benchmarks/memory_breakdown.py --torch-python PATH/TO/torch-venv/bin/python [--backbones tiny base]

Each configuration runs in a fresh Python process that reads its resident set size (`VmRSS`, now) and its peak
(`VmHWM`, the high-water mark) from /proc/self/status after each phase:

  python        the interpreter with numpy
  tensorflow    `import tensorflow` (the data pipeline's and the TF trainer's runtime)
  keras_mmsa    `import keras, keras_hub, keras_mmsa` (KerasHub pulls tensorflow_text)
  built         MMIM built (MOSI preset) on the backbone, optimizers compiled
  batches       the synthetic MOSI-shaped batches of `training_throughput.py` as tensors
  first step    one full iteration of Algorithm 1 (trace, XLA compile when on, run)
  steady        `--steps` more iterations

The PyTorch side is measured the same way in the torch environment: `import torch`, `import transformers` and
mmsa's MMIM modules, then `torch_reference.py`'s full run (its peak). The table gives each phase's increment
and both sides' peaks; the markdown and JSON go to `--out` (default `benchmarks/results/training/memory`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

PHASES = ("python", "tensorflow", "keras_mmsa", "built", "batches", "first step", "steady")


def memory_mb():
    """`(VmRSS, VmHWM)` of this process in MiB (Linux)."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0
    return values["VmRSS"], values["VmHWM"]


def keras_phases(backbone="tiny", batch_size=32, jit_compile=True, steps=3):
    """The phases above in this process; returns `[{phase, rss_mb, peak_mb}]`."""
    out = []

    def mark(phase):
        rss, peak = memory_mb()
        out.append({"phase": phase, "rss_mb": rss, "peak_mb": peak})

    import numpy as np  # noqa: F401

    mark("python")
    import tensorflow as tf

    mark("tensorflow")
    import keras  # noqa: F401
    import keras_hub  # noqa: F401

    import keras_mmsa  # noqa: F401
    from benchmarks import training_throughput as tt

    mark("keras_mmsa")
    case = tt.Case(backbone=backbone, batch_size=batch_size, jit_compile=jit_compile)
    settings = tt.Settings()
    model = tt.build_model(case, settings)
    mark("built")
    raw = tt.synthetic_batches(2, batch_size, settings.shapes, tt._vocabulary_size(case))
    batches = []
    for x, y in raw:
        for k in (0, 1):
            xs = {key: tf.constant(v) for key, v in x.items()}
            xs["stage"] = tf.fill((batch_size,), tf.constant(k, tf.int32))
            batches.append((xs, tf.constant(y)))
    mark("batches")

    def iteration(i):
        for x, y in batches[2 * (i % 2) : 2 * (i % 2) + 2]:
            model.train_on_batch(x, y)

    iteration(0)
    mark("first step")
    for i in range(steps):
        iteration(i + 1)
    mark("steady")
    return out


TORCH_IMPORTS = """
import json, importlib
def mark(phase):
    v = {}
    for line in open('/proc/self/status'):
        k, _, rest = line.partition(':')
        if k in ('VmRSS', 'VmHWM'):
            v[k] = int(rest.split()[0]) / 1024.0
    out.append({'phase': phase, 'rss_mb': v['VmRSS'], 'peak_mb': v['VmHWM']})
out = []
import numpy
mark('python')
import torch
mark('torch')
import transformers
importlib.import_module('MMSA.models.singleTask.MMIM')
importlib.import_module('MMSA.trains.singleTask.MMIM')
mark('transformers + mmsa')
print(json.dumps(out))
"""


def torch_phases(torch_python, backbone, batch_size, threads=1):
    """The PyTorch side: import phases (a small script) and `torch_reference.py`'s full-run peak."""
    env = dict(os.environ, TQDM_DISABLE="1")
    imports = subprocess.run(
        [torch_python, "-c", TORCH_IMPORTS], capture_output=True, text=True, env=env, check=True
    )
    phases = json.loads(imports.stdout.strip().splitlines()[-1])
    from benchmarks import training_throughput as tt

    settings = dataclasses.replace(tt.Settings(), warmup=1, repeats=3)
    full = tt.run_torch_reference(backbone, batch_size, settings, torch_python, threads=threads)
    phases.append({"phase": "full run (peak)", "rss_mb": None, "peak_mb": full["peak_rss_mb"]})
    return phases


@dataclasses.dataclass(frozen=True)
class Config:
    backbone: str = "tiny"
    batch_size: int = 32
    jit_compile: bool = True

    @property
    def label(self):
        return f"{self.backbone} B={self.batch_size} {'xla' if self.jit_compile else 'no-xla'}"


def _worker(argv):
    args = json.loads(argv[0])
    common.set_environment()
    phases = keras_phases(**args["config"], steps=args["steps"])
    pathlib.Path(args["out"]).write_text(json.dumps(phases))


def run_keras_isolated(config, steps):
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "phases.json"
        payload = json.dumps(
            {"config": dataclasses.asdict(config), "steps": steps, "out": str(out)}
        )
        cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", payload]
        common.run_json_subprocess(cmd, out, f"keras phases {config.label}")
        return json.loads(out.read_text())


def markdown(results, meta):
    lines = [
        "# Where peak training memory goes: MMIM (keras_mmsa, TensorFlow) vs mmsa's PyTorch MMIM",
        "",
        f"Run {meta['date']} on {meta['platform']}; load average before/after {meta['load_before']} / "
        f"{meta['load_after']}. Command: `{meta['command']}`.",
        "",
        "Each column is a fresh process; RSS = resident now, peak = high-water mark (`VmRSS`/`VmHWM`), MiB;"
        " + = the phase's increment of the peak.",
        "",
    ]
    for res in results:
        lines += [
            f"## {res['label']}",
            "",
            "| side | phase | RSS | peak | + peak |",
            "|---|---|---|---|---|",
        ]
        for side in ("keras", "torch"):
            prev = 0.0
            for p in res.get(side) or []:
                rss = "" if p["rss_mb"] is None else f"{p['rss_mb']:.0f}"
                lines.append(
                    f"| {side} | {p['phase']} | {rss} | {p['peak_mb']:.0f} | {p['peak_mb'] - prev:+.0f} |"
                )
                prev = p["peak_mb"]
        if res.get("torch"):
            k, t = res["keras"][-1]["peak_mb"], res["torch"][-1]["peak_mb"]
            lines.append("")
            lines.append(f"Peak Keras / PyTorch: {k:.0f} / {t:.0f} MiB = {k / t:.2f}x.")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["tiny"], choices=["tiny", "base"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--no-xla-too", action="store_true", help="also measure each backbone without XLA"
    )
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--torch-python", default=None)
    p.add_argument("--out", default="benchmarks/results/training/memory")
    args = p.parse_args(argv)
    import datetime
    import platform

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.platform()} ({os.cpu_count()} CPUs)",
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "command": common.command_line("memory_breakdown.py", argv),
    }
    results = []
    for backbone in args.backbones:
        for jit in (True, False) if args.no_xla_too else (True,):
            config = Config(backbone, args.batch_size, jit)
            res = {"label": config.label, "config": dataclasses.asdict(config)}
            res["keras"] = run_keras_isolated(config, args.steps)
            if args.torch_python and jit:
                res["torch"] = torch_phases(args.torch_python, backbone, args.batch_size)
            results.append(res)
            print(json.dumps(res))
    meta["load_after"] = [round(v, 2) for v in os.getloadavg()]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "memory.md").write_text(markdown(results, meta))
    print(f"wrote {out / 'memory.md'}")


if __name__ == "__main__":
    main()
