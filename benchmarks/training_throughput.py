"""MMIM training throughput and peak memory, against the PyTorch reference (issue 6; DESIGN §7 "Speed").

    python benchmarks/training_throughput.py --torch-python PATH/TO/torch-venv/bin/python  # the full run (~1 h)
    python benchmarks/training_throughput.py --quick --out OUT_DIR                          # tiny backbone, minutes
    python benchmarks/training_throughput.py --quick --jax-python PATH/TO/jax-venv/bin/python --torch-python ...

Writes throughput.json and throughput.md into --out (default benchmarks/results/training). The PyTorch reference
needs a separate environment with torch and mmsa 2.2.1 (see `torch_reference.py` beside this file for the
commands); without --torch-python the ratios to it are left out.

One *full iteration* is what the reference code does per batch of Algorithm 1, stage 1 + stage 2:

* `alternation="epoch"` (Algorithm 1, the default of `MMIM`): one stage-0 batch (q's likelihood: a forward pass
  of the encoders and a q update) followed by one stage-1 batch (the main loss: forward + backward of
  everything). The batches carry `inputs["stage"]`, as `keras_mmsa.data.staging` tags them.
* `alternation="batch"`: one batch that runs both stages on one forward pass of the encoders.

Each configuration (`Case`) runs in a fresh Python process (`run_case_isolated`) so that its peak resident set
size (`ru_maxrss`) is its own: build the model, run one iteration (tracing + XLA compilation: reported as
`first_iteration_s`, and `compile_s` = that minus a steady iteration), `warmup` more, then `repeats` timed
iterations (wall clock and process CPU time). Batches are synthetic but shaped like MOSI unaligned
(`synthetic_batches`): 50 tokens, audio 375 x 5, vision 500 x 20, lengths drawn from the real MOSI clip-duration
distribution, so most sequences are far shorter than the padded length (as in the real data).

With `--jax-python` (a Python whose environment has jax and this package's requirements), every XLA case of
the packed encoder with the default dropout runs a second time on the JAX trainer (`Case.backend="jax"`: its
subprocess has KERAS_BACKEND=jax), on the same batches, and the report adds a three-column table: TensorFlow
trainer, JAX trainer, PyTorch reference, per iteration and per sample, peak RSS beside each (`--name` names the
output files, e.g. `three_backends`).

The PyTorch reference is THUIAR's `mmsa` 2.2.1 MMIM port, timed by `torch_reference.py` (beside this file) in a separate Python environment on the same batches; `run_benchmark` reports every throughput as a
ratio to it (same backbone and batch size) and to the previous encoder implementation (the Keras LSTM,
`SequenceEncoder.reference_call`, `encoder="keras"`). Machines shared with other work are noisy: compare ratios
within one run, and read the recorded load averages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

# Run as `python benchmarks/training_throughput.py`: `benchmarks` imports from the repository root.
if not __package__:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

# BERT-base (bert-base-uncased's architecture), built from this config with random weights: no download.
BASE_BERT = dict(
    vocabulary_size=30522,
    num_layers=12,
    num_heads=12,
    hidden_dim=768,
    intermediate_dim=3072,
    dropout=0.1,
    max_sequence_length=512,
)
BACKBONES = ("base", "tiny")
ALTERNATIONS = ("batch", "epoch")
ENCODERS = ("packed", "keras")
DROPOUT_RNGS = ("default", "threefry")
TRAINER_BACKENDS = ("tensorflow", "jax")

# Real MOSI clip durations (CMU-MOSI label intervals, 2198 clips) are log-normal: mean log 1.216, std 0.668
# (seconds; median 3.4 s, 95th percentile 10 s). A padded sequence holds 500 Facet frames at 30 fps = 16.7 s,
# so a clip of d seconds fills a fraction min(1, d / 16.7) of each padded modality.
MOSI_LOG_DURATION = (1.216, 0.668)
MOSI_PADDED_SECONDS = 500 / 30
TORCH_SCRIPT = pathlib.Path(__file__).resolve().with_name("torch_reference.py")


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Padded sizes of one batch (MOSI unaligned by default)."""

    text_len: int = 50
    audio_len: int = 375
    audio_dim: int = 5
    vision_len: int = 500
    vision_dim: int = 20


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked configuration.

    Args:
        backbone: "base" (BERT-base sized, random weights) or "tiny" (the toolkit's offline 2-layer BERT).
        batch_size: examples per batch.
        jit_compile: XLA-compile the train step.
        alternation: "epoch" (Algorithm 1: a full iteration is a stage-0 batch + a stage-1 batch) or "batch".
        encoder: "packed" (`SequenceEncoder.call`) or "keras" (`SequenceEncoder.reference_call`, the masked
            Keras LSTM the encoder used before).
        dropout_rng: "default" (Keras' dropout generator: compiled with `xla_threefry_dropout=False`) or
            "threefry" (the engine's default under XLA: `compile(xla_threefry_dropout=True)`).
        backend: the Keras backend, i.e. the trainer: "tensorflow" or "jax" (`keras_mmsa.engine.jax_trainer`;
            its subprocess runs with KERAS_BACKEND=jax; XLA only: without jit JAX runs op by op).
    """

    backbone: str = "tiny"
    batch_size: int = 32
    jit_compile: bool = True
    alternation: str = "epoch"
    encoder: str = "packed"
    dropout_rng: str = "default"
    backend: str = "tensorflow"

    def __post_init__(self):
        for name, allowed in (
            ("backbone", BACKBONES),
            ("alternation", ALTERNATIONS),
            ("encoder", ENCODERS),
            ("dropout_rng", DROPOUT_RNGS),
            ("backend", TRAINER_BACKENDS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"Case.{name} must be one of {allowed}; got {getattr(self, name)!r}"
                )
        if self.backend == "jax" and (not self.jit_compile or self.dropout_rng != "default"):
            raise ValueError(
                "Case.backend='jax' is measured with XLA and JAX's own dropout only "
                "(jit_compile=True, dropout_rng='default')"
            )

    @property
    def label(self):
        jit = "xla" if self.jit_compile else "no-xla"
        extra = "" if self.encoder == "packed" else f", {self.encoder} LSTM"
        extra += "" if self.dropout_rng == "default" else f", {self.dropout_rng} dropout"
        extra += "" if self.backend == "tensorflow" else f", {self.backend}"
        return f"{self.backbone} B={self.batch_size} {jit} per-{self.alternation}{extra}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Measurement settings shared by every case of a run."""

    shapes: Shapes = Shapes()
    warmup: int = 1
    repeats: int = 5
    num_batches: int = 4
    seed: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["shapes"] = Shapes(**d.get("shapes", {}))
        return cls(**d)


def sample_lengths(rng, n, padded):
    """Sequence lengths in `[1, padded]` of `n` clips drawn from the MOSI clip-duration distribution."""
    seconds = np.exp(rng.normal(*MOSI_LOG_DURATION, size=n))
    return np.clip(np.round(seconds / MOSI_PADDED_SECONDS * padded), 1, padded).astype("int32")


def synthetic_batches(num_batches, batch_size, shapes=Shapes(), vocabulary_size=30522, seed=0):
    """`num_batches` numpy batches `(inputs, label)` in the keras_mmsa inputs layout (`data/spec.py`).

    Token count, audio and vision lengths of a clip all follow its (sampled) duration: ~3.2 tokens per second
    plus [CLS]/[SEP], cut to `text_len`; frames in proportion to the padded length. Features are standard
    normal on valid frames and zero on padding; labels uniform in [-3, 3].
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_batches):
        seconds = np.exp(rng.normal(*MOSI_LOG_DURATION, size=batch_size))
        tokens = np.clip(np.round(2 + 3.2 * seconds), 3, shapes.text_len).astype("int32")
        fraction = np.minimum(1.0, seconds / MOSI_PADDED_SECONDS)
        x = {}
        mask = np.arange(shapes.text_len)[None, :] < tokens[:, None]
        ids = rng.integers(5, vocabulary_size, size=(batch_size, shapes.text_len)).astype("int32")
        x["token_ids"] = np.where(mask, ids, 0).astype("int32")
        x["padding_mask"] = mask
        x["segment_ids"] = np.zeros_like(x["token_ids"])
        for m, steps, dim in (
            ("audio", shapes.audio_len, shapes.audio_dim),
            ("vision", shapes.vision_len, shapes.vision_dim),
        ):
            lengths = np.clip(np.round(fraction * steps), 1, steps).astype("int32")
            frames = rng.normal(size=(batch_size, steps, dim)).astype("float32")
            frames *= (np.arange(steps)[None, :] < lengths[:, None])[..., None]
            x[m] = frames
            x[f"{m}_lengths"] = lengths
        y = rng.uniform(-3, 3, size=batch_size).astype("float32")
        out.append((x, y))
    return out


def save_batches(batches, path):
    """Writes batches as one `.npz` (arrays stacked over batches) for the PyTorch reference script."""
    keys = list(batches[0][0])
    arrays = {k: np.stack([x[k] for x, _ in batches]) for k in keys}
    arrays["label"] = np.stack([y for _, y in batches])
    np.savez(path, **arrays)


def build_model(case, settings):
    """MMIM with MOSI's preset hyper-parameters on the case's backbone, built and compiled."""
    import keras
    import keras_hub

    from keras_mmsa import backbones
    from keras_mmsa.models import MMIM

    keras.utils.set_random_seed(settings.seed)
    if case.backbone == "base":
        backbone = keras_hub.models.BertBackbone(**BASE_BERT)
    else:
        backbone = backbones.tiny_text_backbone(seed=settings.seed)[0]
    s = settings.shapes
    model = MMIM.from_config_name(
        "mosi",
        text_backbone=backbone,
        audio_dim=s.audio_dim,
        vision_dim=s.vision_dim,
        batch_size=case.batch_size,
        alternation=case.alternation,
    )
    model.build(
        {
            "token_ids": (None, s.text_len),
            "audio": (None, s.audio_len, s.audio_dim),
            "vision": (None, s.vision_len, s.vision_dim),
        }
    )
    if case.encoder == "keras":
        for enc in model.backbone.encoders.values():
            enc.call = enc.reference_call
    model.compile(
        **MMIM.default_optimizers("mosi"),
        jit_compile=case.jit_compile,
        xla_threefry_dropout=case.dropout_rng == "threefry",
    )
    return model


def _vocabulary_size(case):
    if case.backbone == "base":
        return BASE_BERT["vocabulary_size"]
    from keras_mmsa import backbones

    return len(backbones.tiny_vocabulary())


def peak_rss_mb():
    """Peak resident set size of this process, MiB (Linux `ru_maxrss` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_case(case, settings=Settings(), log=None):
    """Times `case` in this process (whose Keras backend must be `case.backend`); returns a result dict (see
    `run_benchmark`)."""
    import keras

    if keras.backend.backend() != case.backend:
        raise ValueError(
            f"case {case.label!r} needs KERAS_BACKEND={case.backend}; this process runs "
            f"{keras.backend.backend()} (run_case_isolated sets it)"
        )
    if case.backend == "tensorflow":
        import tensorflow as tf

        constant, fill = tf.constant, lambda n, k: tf.fill((n,), tf.constant(k, tf.int32))
    else:  # the JAX trainer reads a batch's stage id on the host: numpy batches
        constant, fill = np.asarray, lambda n, k: np.full((n,), k, "int32")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model = build_model(case, settings)
    build_s = time.perf_counter() - t0
    rss_built = peak_rss_mb()
    raw = synthetic_batches(
        settings.num_batches,
        case.batch_size,
        settings.shapes,
        vocabulary_size=_vocabulary_size(case),
        seed=settings.seed,
    )
    batches = []
    for x, y in raw:
        x = {k: constant(v) for k, v in x.items()}
        if case.alternation == "epoch":
            stages = []
            for k in (0, 1):
                xs = dict(x)
                xs["stage"] = fill(case.batch_size, k)
                stages.append((xs, constant(y)))
            batches.append(stages)
        else:
            batches.append([(x, constant(y))])

    def iteration(i):
        for x, y in batches[i % len(batches)]:
            logs = model.train_on_batch(x, y, return_dict=True)
        return logs

    logs, first, walls, cpus = common.time_iterations(
        iteration, warmup=settings.warmup, repeats=settings.repeats, log=log, label=case.label
    )
    finite = all(math.isfinite(float(v)) for v in logs.values())
    return {
        "case": dataclasses.asdict(case),
        "label": case.label,
        "implementation": "keras_mmsa",
        "backend": case.backend,
        "backend_version": _backend_version(case.backend),
        **common.iteration_fields(case.batch_size, first, walls, cpus),
        "build_s": build_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_build_mb": rss_built,
        "finite_losses": finite,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
    }


def _backend_version(backend):
    module = __import__("jax" if backend == "jax" else "tensorflow")
    return f"{backend} {module.__version__}"


def _worker(argv=None):
    """Entry point of a case's subprocess: `python benchmarks/training_throughput.py --worker CASE SETTINGS OUT`."""
    argv = sys.argv[2:] if argv is None else argv
    case = Case(**json.loads(argv[0]))
    settings = Settings.from_dict(json.loads(argv[1]))
    result = measure_case(case, settings)
    pathlib.Path(argv[2]).write_text(json.dumps(result))


def run_case_isolated(case, settings=Settings(), python=None, timeout=None):
    """Measures `case` in a fresh Python process (so that its peak RSS is its own) with KERAS_BACKEND set to
    `case.backend`, run by `python` (default this interpreter); returns the result dict."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["KERAS_BACKEND"] = case.backend
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [
            python or sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--worker",
            json.dumps(dataclasses.asdict(case)),
            json.dumps(settings.to_dict()),
            out,
        ]
        return common.run_json_subprocess(
            cmd, out, f"benchmark case {case.label!r}", env=env, timeout=timeout
        )


def run_torch_reference(
    backbone, batch_size, settings=Settings(), torch_python="python", threads=0, timeout=None
):
    """Times the PyTorch reference (PyPI `mmsa` 2.2.1's MMIM) with `torch_python` on the same batches.

    Runs `torch_reference.py` (beside this module) in that interpreter's environment, which must
    have torch and mmsa (see the script's docstring); returns its result dict.
    """
    from benchmarks import throughput_common  # imports this module: not at module level

    vocab = throughput_common.vocabulary_size(backbone)
    return throughput_common.run_reference(
        torch_python,
        TORCH_SCRIPT,
        lambda path: save_batches(
            synthetic_batches(
                settings.num_batches, batch_size, settings.shapes, vocab, seed=settings.seed
            ),
            path,
        ),
        settings,
        backbone,
        threads,
        f"PyTorch reference ({backbone})",
        timeout,
    )


def default_cases(quick=False, backbones=BACKBONES, batch_sizes=(32, 64)):
    """The benchmark's configurations.

    Full: for each backbone, jit on/off x per-batch/per-epoch x `batch_sizes` with the packed encoder; the
    previous Keras-LSTM encoder on the B=32 cases of the tiny backbone (where the encoders matter); ThreeFry
    dropout on the XLA B=32 cases of tiny and the XLA per-epoch B=32 case of BERT-base. Quick: the tiny backbone,
    B=32, XLA, both alternations, packed vs Keras LSTM.
    """
    cases = []
    if quick:
        for alt in ALTERNATIONS:
            for enc in ENCODERS:
                cases.append(Case("tiny", 32, True, alt, enc))
        return cases
    for bb in backbones:
        for b in batch_sizes:
            for jit in (True, False):
                for alt in ALTERNATIONS:
                    cases.append(Case(bb, b, jit, alt))
        if (
            bb == "tiny"
        ):  # the encoders are ~1% of a BERT-base iteration: the before/after is on tiny
            for jit in (True, False):
                for alt in ALTERNATIONS:
                    cases.append(Case(bb, 32, jit, alt, encoder="keras"))
            for alt in ALTERNATIONS:
                cases.append(Case(bb, 32, True, alt, dropout_rng="threefry"))
        else:
            cases.append(Case(bb, 32, True, "epoch", dropout_rng="threefry"))
    return cases


def with_jax_cases(cases):
    """`cases` plus, for each TensorFlow XLA case of the packed encoder with the default dropout, the same case
    on the JAX trainer (after them, in the same order)."""
    twins = [
        dataclasses.replace(c, backend="jax")
        for c in cases
        if c.backend == "tensorflow"
        and c.jit_compile
        and c.encoder == "packed"
        and c.dropout_rng == "default"
    ]
    return list(cases) + [c for c in twins if c not in cases]


def _key(case_dict, **override):
    d = {"backend": "tensorflow", **case_dict, **override}
    return tuple(
        d[k]
        for k in (
            "backbone",
            "batch_size",
            "jit_compile",
            "alternation",
            "encoder",
            "dropout_rng",
            "backend",
        )
    )


def add_ratios(results, references):
    """Adds `vs_torch` (throughput / the PyTorch reference's, same backbone and batch size) and `vs_keras_lstm`
    (throughput / the same case with the Keras-LSTM encoder) to each result that has its reference, and to each
    JAX result `vs_tensorflow` / `rss_vs_tensorflow` (throughput / peak RSS over the same case's on TensorFlow)."""
    by_key = {_key(r["case"]): r for r in results}
    torch = {(r["backbone"], r["batch_size"]): r for r in references}
    for r in results:
        c = r["case"]
        ref = torch.get((c["backbone"], c["batch_size"]))
        if ref is not None:
            r["vs_torch"] = r["samples_per_s"] / ref["samples_per_s"]
            r["rss_vs_torch"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
        if c["encoder"] == "packed":
            before = by_key.get(_key(c, encoder="keras"))
            if before is not None:
                r["vs_keras_lstm"] = r["samples_per_s"] / before["samples_per_s"]
                r["cpu_vs_keras_lstm"] = (
                    before["iteration_cpu_s"]["median"] / r["iteration_cpu_s"]["median"]
                )
        if c["dropout_rng"] == "threefry":
            base = by_key.get(_key(c, dropout_rng="default"))
            if base is not None:
                r["vs_default_dropout"] = r["samples_per_s"] / base["samples_per_s"]
        if c.get("backend", "tensorflow") != "tensorflow":
            on_tf = by_key.get(_key(c, backend="tensorflow"))
            if on_tf is not None:
                r["vs_tensorflow"] = r["samples_per_s"] / on_tf["samples_per_s"]
                r["rss_vs_tensorflow"] = r["peak_rss_mb"] / on_tf["peak_rss_mb"]
    return results


def three_backends_table(results, references):
    """Markdown rows side by side, one per (backbone, batch size, alternation) that has a JAX result: the
    TensorFlow trainer, the JAX trainer (XLA, packed encoder, default dropout) and the PyTorch reference
    (stage 1 + stage 2, the same for both alternations), each with s/iteration, samples/s and peak RSS.
    Empty when no result ran on JAX."""
    by_key = {_key(r["case"]): r for r in results}
    torch = {(r["backbone"], r["batch_size"]): r for r in references if r.get("is_reference", True)}
    rows = []
    for r in results:
        c = r["case"]
        if c.get("backend") != "jax":
            continue
        tf_r = by_key.get(_key(c, backend="tensorflow"))
        ref = torch.get((c["backbone"], c["batch_size"]))
        cells = common.backend_row_cells(tf_r, r, ref, digits=3)
        rows.append(
            f"| {c['backbone']} B={c['batch_size']} per-{c['alternation']} | "
            + " | ".join(cells)
            + " |"
        )
    if not rows:
        return []
    versions = sorted({r["backend_version"] for r in results if "backend_version" in r})
    versions += sorted({f"torch {r['torch_version']}" for r in references if "torch_version" in r})
    return [
        "",
        "## TensorFlow trainer, JAX trainer, PyTorch reference",
        "",
        "XLA, packed encoder, default dropout; same batches, same run. s: seconds per full iteration (median); "
        "/s: samples per second; RSS: peak MiB of the configuration's own process. The PyTorch reference has "
        "one iteration (stage 1 + stage 2) for both alternations."
        + (f" Versions: {', '.join(versions)}." if versions else ""),
        "",
        "| configuration | TF s | TF /s | TF RSS | JAX s | JAX /s | JAX RSS | torch s | torch /s | torch RSS"
        " | JAX x TF | TF x torch | JAX x torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def markdown_table(results, references, meta):
    """The results as a markdown document (one row per case, then the PyTorch reference rows)."""
    lines = [
        "# MMIM training throughput",
        "",
        f"Run {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs); {meta['versions']}.",
        f"Load average (1 min) before/after the run: {meta['load_before']:.2f} / {meta['load_after']:.2f}.",
        "",
        "A full iteration = stage 1 + stage 2 of MMIM's Algorithm 1 on one batch of MOSI-unaligned shapes "
        "(text 50 tokens, audio 375x5, vision 500x20, MOSI-like lengths): per-epoch = one stage-0 batch + one "
        "stage-1 batch; per-batch = one batch running both stages. Times: median over "
        f"{_repeats(meta)} iterations after {meta['warmup']} warm-up iteration(s), compilation excluded "
        "(reported separately). Peak RSS: `ru_maxrss` of a fresh process per configuration. "
        "`x torch`: throughput ratio to the PyTorch reference (mmsa 2.2.1's MMIM, stage 1 + stage 2, same "
        "backbone and batch size, same batches); `x keras-LSTM`: ratio to the same configuration with the "
        "previous encoder (masked `keras.layers.LSTM`), wall / CPU time.",
        "",
        "| configuration | iteration s (median) | IQR s | samples/s | x torch | x keras-LSTM (wall / cpu)"
        " | compile s | peak RSS MiB | RSS x torch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        before = ""
        if "vs_keras_lstm" in r:
            before = f"{r['vs_keras_lstm']:.2f} / {r['cpu_vs_keras_lstm']:.2f}"
        if "vs_default_dropout" in r:
            before = f"(x default dropout {r['vs_default_dropout']:.2f})"
        lines.append(
            f"| {r['label']} | {_fmt(r['iteration_s']['median'], 3)} | {_fmt(r['iteration_s']['iqr'], 3)} "
            f"| {_fmt(r['samples_per_s'], 1)} | {_fmt(r.get('vs_torch'))} | {before} "
            f"| {_fmt(r['compile_s'], 1)} | {_fmt(r['peak_rss_mb'], 0)} | {_fmt(r.get('rss_vs_torch'))} |"
        )
    for ref in references:
        mark = " **reference**" if ref.get("is_reference", True) else ""
        lines.append(
            f"| PyTorch mmsa MMIM {ref['backbone']} B={ref['batch_size']} (torch {ref['torch_version']},"
            f" {ref['threads']} threads){mark} | {_fmt(ref['iteration_s']['median'], 3)} "
            f"| {_fmt(ref['iteration_s']['iqr'], 3)} | {_fmt(ref['samples_per_s'], 1)} | | | "
            f"| {_fmt(ref['peak_rss_mb'], 0)} | |"
        )
        if "stage1_s" in ref:
            lines.append(
                f"|   (stage 1 {ref['stage1_s']['median']:.3f} s + stage 2 "
                f"{ref['stage2_s']['median']:.3f} s) | | | | | | | | |"
            )
    lines += three_backends_table(results, references)
    lines += ["", meta.get("notes", ""), ""]
    return "\n".join(lines)


def _repeats(meta):
    counts = {bb: s["repeats"] for bb, s in meta.get("settings", {}).items()}
    if len(set(counts.values())) <= 1:
        return str(meta["repeats"])
    return " / ".join(f"{n} ({bb})" for bb, n in counts.items())


def _versions():
    import keras
    import keras_hub
    import tensorflow as tf

    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, KerasHub {keras_hub.__version__}"
    )


def run_benchmark(
    cases,
    settings=Settings(),
    out_dir=None,
    torch_python=None,
    torch_backbones=BACKBONES,
    torch_batch_sizes=(32,),
    torch_threads=(0,),
    torch_timeout=1800,
    isolate=True,
    settings_for=None,
    notes="",
    log=print,
    jax_python=None,
    name="throughput",
):
    """Measures every case (each in its own process unless `isolate=False`) and the PyTorch reference.

    Args:
        cases: list of `Case`.
        settings: `Settings` (or per-backbone via `settings_for(backbone) -> Settings`).
        out_dir: where to write `throughput.json` and `throughput.md` (None: write nothing).
        torch_python: a Python with torch + mmsa for the reference (None: no reference).
        torch_backbones, torch_batch_sizes: the reference's configurations.
        torch_threads: torch thread counts to time each reference configuration with (0: torch's default);
            the fastest is the reference of the ratios (on a loaded machine, two OpenMP threads can be far
            slower than one).
        isolate: one process per case (peak RSS per case); False measures in this process (for tests).
        jax_python: the Python that runs the cases whose `backend` is "jax" (default this interpreter).
        name: the output files' stem (`<name>.json`, `<name>.md`).
        notes: free text appended to the markdown.

    Returns:
        `{"meta": ..., "results": [...], "torch_reference": [...]}` (also the JSON written).
    """
    settings_for = settings_for or (lambda backbone: settings)
    load_before = os.getloadavg()[0]
    references, torch_runs, torch_failures = [], [], []
    if torch_python:
        for bb in torch_backbones:
            for b in torch_batch_sizes:
                runs = []
                for threads in torch_threads:
                    log(f"PyTorch reference {bb} B={b} threads={threads or 'default'} ...")
                    try:
                        ref = run_torch_reference(
                            bb, b, settings_for(bb), torch_python, threads, timeout=torch_timeout
                        )
                    except subprocess.TimeoutExpired:
                        log(f"  no result within {torch_timeout} s: skipped")
                        torch_failures.append(
                            {
                                "backbone": bb,
                                "batch_size": b,
                                "threads": threads,
                                "timeout_s": torch_timeout,
                            }
                        )
                        continue
                    log(
                        f"  {ref['iteration_s']['median']:.3f} s/iteration,"
                        f" {ref['samples_per_s']:.1f} samples/s, peak RSS {ref['peak_rss_mb']:.0f} MiB"
                    )
                    runs.append(ref)
                if not runs:
                    continue
                best = max(runs, key=lambda r: r["samples_per_s"])
                for r in runs:
                    r["is_reference"] = r is best
                torch_runs += runs
                references.append(best)
    results = []
    for case in cases:
        log(f"{case.label} ...")
        s = settings_for(case.backbone)
        python = jax_python if case.backend == "jax" else None
        r = run_case_isolated(case, s, python=python) if isolate else measure_case(case, s)
        log(
            f"  {r['iteration_s']['median']:.3f} s/iteration (IQR {r['iteration_s']['iqr']:.3f}),"
            f" {r['samples_per_s']:.1f} samples/s, compile {r['compile_s']:.1f} s,"
            f" peak RSS {r['peak_rss_mb']:.0f} MiB"
        )
        results.append(r)
    add_ratios(results, references)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "warmup": settings.warmup,
        "repeats": settings.repeats,
        "settings": {bb: settings_for(bb).to_dict() for bb in BACKBONES},
        "notes": notes,
        "torch_failures": torch_failures,
    }
    report = {"meta": meta, "results": results, "torch_reference": torch_runs}
    if out_dir is not None:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(report, indent=1))
        (out / f"{name}.md").write_text(markdown_table(results, torch_runs, meta))
    return report


def parser():
    p = argparse.ArgumentParser(
        prog="training_throughput.py",
        description=__doc__.split("\nOne *full iteration*")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="benchmarks/results/training")
    p.add_argument("--quick", action="store_true", help="tiny backbone, B=32, XLA only, 3 repeats")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64])
    p.add_argument("--repeats", type=int, default=None, help="timed iterations (default 5; base 3)")
    p.add_argument("--warmup", type=int, default=None, help="default 1; base 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--torch-python", default=None, help="a Python with torch and mmsa 2.2.1 (the reference)"
    )
    p.add_argument(
        "--torch-threads",
        nargs="+",
        type=int,
        default=[0, 1],
        help="torch thread counts to time (0 = torch's default); the fastest is the reference",
    )
    p.add_argument(
        "--jax-python",
        default=None,
        help="a Python with jax and this package's requirements: each XLA case of the packed encoder with the "
        "default dropout also runs on the JAX trainer (KERAS_BACKEND=jax)",
    )
    p.add_argument(
        "--name", default="throughput", help="output file stem: NAME.json and NAME.md in --out"
    )
    p.add_argument(
        "--case",
        action="append",
        default=None,
        metavar="BACKBONE,BATCH,XLA,ALTERNATION[,ENCODER[,DROPOUT_RNG[,BACKEND]]]",
        help="run only these cases, e.g. tiny,32,1,epoch,keras (repeatable)",
    )
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    common.set_environment()
    if args.case:
        cases = []
        for spec in args.case:
            parts = spec.split(",")
            cases.append(
                Case(parts[0], int(parts[1]), parts[2] in ("1", "true", "xla"), *parts[3:])
            )
    else:
        cases = default_cases(
            quick=args.quick, backbones=args.backbones, batch_sizes=tuple(args.batch_sizes)
        )
    if args.jax_python:
        cases = with_jax_cases(cases)

    def settings_for(backbone):
        # BERT-base iterations take seconds: 3 timed iterations, no extra warm-up (the first, compiling
        # iteration already warms up)
        repeats = args.repeats or (3 if args.quick or backbone == "base" else 5)
        warmup = args.warmup if args.warmup is not None else (0 if backbone == "base" else 1)
        return Settings(warmup=warmup, repeats=repeats, seed=args.seed)

    torch_backbones = sorted({c.backbone for c in cases}, key=list(BACKBONES).index)
    start = time.perf_counter()
    report = run_benchmark(
        cases,
        settings_for("tiny"),
        out_dir=args.out,
        torch_python=args.torch_python,
        torch_backbones=torch_backbones,
        torch_threads=tuple(args.torch_threads),
        settings_for=settings_for,
        log=lambda msg: print(msg, flush=True),
        jax_python=args.jax_python,
        name=args.name,
    )
    print(
        f"wrote {len(report['results'])} configurations to {os.path.join(args.out, args.name + '.json')}"
        f" in {time.perf_counter() - start:.0f}s"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        common.set_environment()
        _worker()
    else:
        sys.exit(main())
