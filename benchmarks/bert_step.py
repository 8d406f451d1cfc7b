"""BERT alone: its training-mode forward and its training step, TensorFlow / JAX / PyTorch, same batch.

    python benchmarks/bert_step.py --torch-python PATH/TO/torch-venv/bin/python \
        --jax-python PATH/TO/jax-venv/bin/python [--backbone base]

MMIM's per-epoch alternation (Algorithm 1) runs, per pair of batches, one training-mode forward of the whole
model (the stage-1 batch: q's likelihood on detached features) and one forward + backward + update (the stage-2
batch); mmsa's PyTorch MMIM runs a full forward + backward on both (its stage 1 back-propagates -lld through
BERT, then steps q's optimizer only). At BERT-base BERT is nearly all of either, so the ratio the toolkit can
reach there is bounded by how fast each framework runs BERT itself. This script measures that, with nothing
of keras_mmsa around it:

  forward   `BERT(x, training=True)` -> [CLS] (dropout on, no gradient)
  step      [CLS] -> Dense(1), mean squared error, gradients, global-norm clipping at 5 (MMIM's), one update

on one MOSI-shaped batch (`training_throughput.synthetic_batches`: 50 tokens, MOSI-like lengths), BERT-base
sizes with random weights, for each of:

  tensorflow        Keras' TensorFlow trainer, graph mode (`compile(jit_compile=False)`)
  tensorflow-xla    the same, XLA
  jax               Keras' JAX trainer (`--jax-python`)
  torch             `transformers.BertModel` + `torch.nn.Linear`, `torch.optim.Adam` / `SGD`, torch's default
                    threads (`--torch-python`; `torch_bert_step.py`)

each with Adam (MMIM's optimizer: two moment slots per weight) and with plain SGD (no optimizer state: what the
step costs without it). Every configuration runs in a fresh process and reports its peak RSS (`VmHWM`) after
building, after the forward timings and after the step timings. Results: `bert_step.json` / `.md` in `--out`
(default `benchmarks/results/training/bert_step`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

KERAS_IMPLEMENTATIONS = ("tensorflow", "tensorflow-xla", "jax")
OPTIMIZERS = ("adam", "sgd")
CLIPNORM = 5.0
LEARNING_RATE = 1e-5


@dataclasses.dataclass(frozen=True)
class Case:
    implementation: str  # one of KERAS_IMPLEMENTATIONS or "torch"
    optimizer: str = "adam"
    backbone: str = "base"
    batch_size: int = 32

    @property
    def label(self):
        return f"{self.implementation} {self.optimizer} {self.backbone} B={self.batch_size}"


def vm_peak_mb():
    """`VmHWM` (peak resident set) of this process, MiB."""
    from benchmarks.memory_breakdown import memory_mb

    return memory_mb()[1]


def batch(backbone, batch_size, seed=0):
    """`(inputs, label)`: the first synthetic MOSI-shaped batch of `training_throughput`, text only."""
    from benchmarks import throughput_common
    from benchmarks import training_throughput as tt

    x, y = tt.synthetic_batches(
        1, batch_size, vocabulary_size=throughput_common.vocabulary_size(backbone), seed=seed
    )[0]
    inputs = {k: x[k] for k in ("token_ids", "padding_mask", "segment_ids")}
    return inputs, y.reshape(-1, 1)


def measure(case, repeats, warmup, seed=0):
    """One Keras configuration in this process: seconds of the forward and of the step, peaks, compile time."""
    import keras
    import numpy as np

    from benchmarks import throughput_common
    from benchmarks.training_throughput import _backend_version

    peaks = {"imports": vm_peak_mb()}
    keras.utils.set_random_seed(seed)
    x, y = batch(case.backbone, case.batch_size, seed)
    bert = throughput_common.text_backbone(case.backbone, seed)
    inputs = {k: keras.Input(shape=v.shape[1:], dtype=v.dtype, name=k) for k, v in x.items()}
    cls = keras.layers.Lambda(lambda s: s[:, 0])(bert(inputs)["sequence_output"])
    model = keras.Model(inputs, keras.layers.Dense(1)(cls))
    optimizer = (
        keras.optimizers.Adam(LEARNING_RATE, global_clipnorm=CLIPNORM)
        if case.optimizer == "adam"
        else keras.optimizers.SGD(LEARNING_RATE, global_clipnorm=CLIPNORM)
    )
    xla = case.implementation != "tensorflow"
    model.compile(optimizer=optimizer, loss="mse", jit_compile=xla)
    peaks["built"] = vm_peak_mb()

    forward = _training_forward(model, xla)
    t0 = time.perf_counter()
    np.asarray(forward(x))
    forward_first = time.perf_counter() - t0

    def forward_iteration(i):
        return np.asarray(forward(x))

    _, _, forward_walls, _ = common.time_iterations(
        forward_iteration, warmup=warmup, repeats=repeats
    )
    peaks["forward"] = vm_peak_mb()

    def step_iteration(i):
        return float(model.train_on_batch(x, y))

    loss, step_first, step_walls, step_cpus = common.time_iterations(
        step_iteration, warmup=warmup, repeats=repeats
    )
    peaks["step"] = vm_peak_mb()
    if not np.isfinite(loss):
        raise RuntimeError(f"{case.label}: the loss is {loss}")
    from benchmarks.torch_common import summary_stats

    return {
        "case": dataclasses.asdict(case),
        "forward_s": summary_stats(forward_walls),
        "step_s": summary_stats(step_walls),
        "step_cpu_s": summary_stats(step_cpus),
        "forward_first_s": forward_first,
        "step_first_s": step_first,
        "peak_mb": peaks,
        "backend": keras.backend.backend(),
        "backend_version": _backend_version(keras.backend.backend()),
    }


def _training_forward(model, xla):
    """`x -> [CLS] output` in training mode (dropout on), compiled as the backend compiles a step."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def run(tv, ntv, x):
            return model.stateless_call(tv, ntv, x, training=True)[0]

        return lambda x: run(trainable, non_trainable, x)
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=True), jit_compile=xla)


def _worker(argv):
    args = json.loads(argv[0])
    common.set_environment()
    result = measure(Case(**args["case"]), args["repeats"], args["warmup"], args["seed"])
    pathlib.Path(args["out"]).write_text(json.dumps(result))


def run_isolated(case, repeats, warmup, seed, python=None, timeout=1800):
    """Runs `case` in a fresh process: `python` (default this interpreter) with this file, or, for "torch",
    `torch_bert_step.py` in the PyTorch environment."""
    here = pathlib.Path(__file__).resolve()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "result.json"
        if case.implementation == "torch":
            npz = pathlib.Path(tmp) / "batch.npz"
            _save_batch(case, seed, npz)
            cmd = [
                python,
                str(here.parent / "torch_bert_step.py"),
                "--backbone", case.backbone,
                "--optimizer", case.optimizer,
                "--batch", str(npz),
                "--repeats", str(repeats),
                "--warmup", str(warmup),
                "--seed", str(seed),
                "--clipnorm", str(CLIPNORM),
                "--lr", str(LEARNING_RATE),
                "--out", str(out),
            ]  # fmt: skip
        else:
            env["KERAS_BACKEND"] = "jax" if case.implementation == "jax" else "tensorflow"
            payload = {
                "case": dataclasses.asdict(case),
                "repeats": repeats,
                "warmup": warmup,
                "seed": seed,
                "out": str(out),
            }
            cmd = [python or sys.executable, str(here), "--worker", json.dumps(payload)]
        return common.run_json_subprocess(cmd, out, case.label, env=env, timeout=timeout)


def _save_batch(case, seed, path):
    import numpy as np

    x, y = batch(case.backbone, case.batch_size, seed)
    np.savez(path, label=y, **x)


def cases_for(backbone, batch_size, implementations, optimizers=OPTIMIZERS):
    return [Case(impl, opt, backbone, batch_size) for impl in implementations for opt in optimizers]


def markdown(results, meta):
    """The report: one row per configuration, seconds and peaks, and each ratio to torch's same optimizer."""
    torch = {
        r["case"]["optimizer"]: r
        for r in results
        if r["case"]["implementation"] == "torch" and "error" not in r
    }
    lines = [
        "# BERT alone: training-mode forward and training step, TensorFlow / JAX / PyTorch",
        "",
        f"Run {meta['date']} on {meta['platform']}; load average before/after {meta['load_before']} / "
        f"{meta['load_after']}. Command: `{meta['command']}`. Versions: {meta['versions']}.",
        "",
        "One MOSI-shaped batch (50 tokens, MOSI-like lengths), random weights. forward: training mode, no "
        "gradient; step: forward + MSE on [CLS] -> Dense(1) + backward + global-norm clipping + update. Seconds:"
        " median of the timed calls after the first (compiling) one. Peaks (`VmHWM`, MiB) after building, after "
        "the forward timings and after the step timings, each in a fresh process. `x torch`: the torch row of the"
        " same optimizer's seconds (or peak) divided by this row's (speed) / this row's divided by torch's "
        "(memory).",
        "",
        "| implementation | optimizer | forward s | step s | x torch (step) | first step s | peak built | "
        "peak forward | peak step | peak x torch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r["case"]
        if "error" in r:
            lines.append(f"| {c['implementation']} | {c['optimizer']} | failed: {r['error']} |")
            continue
        ref = torch.get(c["optimizer"])
        speed = peak = ""
        if ref is not None and c["implementation"] != "torch":
            speed = f"{ref['step_s']['median'] / r['step_s']['median']:.2f}"
            peak = f"{r['peak_mb']['step'] / ref['peak_mb']['step']:.2f}"
        p = r["peak_mb"]
        lines.append(
            f"| {c['implementation']} | {c['optimizer']} | {r['forward_s']['median']:.3f} | "
            f"{r['step_s']['median']:.3f} | {speed} | {r.get('step_first_s', 0.0):.1f} | {p['built']:.0f} | "
            f"{p['forward']:.0f} | {p['step']:.0f} | {peak} |"
        )
    lines += ["", *per_epoch_bound(results), ""]
    return "\n".join(lines)


def per_epoch_bound(results):
    """What the per-epoch alternation can reach at this size: the reference runs forward + backward on both
    batches of a pair, keras_mmsa a forward on one and a step on the other; with BERT as the whole model the
    ratio is torch's 2 x step over (forward + step) of each Keras implementation (Adam rows)."""
    rows = {
        r["case"]["implementation"]: r
        for r in results
        if r["case"]["optimizer"] == "adam" and "error" not in r
    }
    if "torch" not in rows:
        return []
    ref = 2 * rows["torch"]["step_s"]["median"]
    out = [
        "Per-epoch alternation with BERT as the whole model (Adam rows): PyTorch MMIM's pair of batches costs "
        f"2 x step = {ref:.2f} s here; keras_mmsa's costs forward + step:",
        "",
    ]
    for impl, r in rows.items():
        if impl == "torch":
            continue
        ours = r["forward_s"]["median"] + r["step_s"]["median"]
        out.append(f"- {impl}: {ours:.2f} s, at most **{ref / ours:.2f}x** the reference.")
    return out


def parser():
    p = argparse.ArgumentParser(
        prog="bert_step.py",
        description=__doc__.split("\n\nMMIM's")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="benchmarks/results/training/bert_step")
    p.add_argument("--backbone", default="base", choices=("base", "tiny"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    p.add_argument("--torch-python", default=None, help="a Python with torch and transformers")
    p.add_argument(
        "--jax-python", default=None, help="a Python with jax and this package's requirements"
    )
    p.add_argument("--debug", action="store_true")
    return p


@common.one_line_errors
def main(argv):
    args = parser().parse_args(argv)
    common.set_environment()
    import platform

    implementations = ["tensorflow", "tensorflow-xla"]
    if args.jax_python:
        implementations.append("jax")
    if args.torch_python:
        implementations.append("torch")
    load_before = os.getloadavg()[0]
    results = []
    for case in cases_for(args.backbone, args.batch_size, implementations, tuple(args.optimizers)):
        python = {"jax": args.jax_python, "torch": args.torch_python}.get(case.implementation)
        print(f"{case.label} ...", flush=True)
        try:
            r = run_isolated(case, args.repeats, args.warmup, args.seed, python=python)
        except RuntimeError as exc:
            r = {"case": dataclasses.asdict(case), "error": str(exc).splitlines()[0]}
            print(f"  {r['error']}", flush=True)
        else:
            print(
                f"  forward {r['forward_s']['median']:.3f} s, step {r['step_s']['median']:.3f} s, "
                f"peak {r['peak_mb']['step']:.0f} MiB",
                flush=True,
            )
        results.append(r)
    from benchmarks import throughput_common

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "platform": f"{platform.platform()} ({os.cpu_count()} CPUs)",
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "command": common.command_line("bert_step.py", argv),
        "versions": ", ".join(
            [throughput_common.versions()]
            + sorted(
                {r["backend_version"] for r in results if "backend_version" in r}
                | {f"torch {r['torch_version']}" for r in results if "torch_version" in r}
            )
        ),
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bert_step.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "bert_step.md").write_text(markdown(results, meta))
    print(f"wrote {out / 'bert_step.md'}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2:])
    else:
        sys.exit(main())
