"""The shared test harness of base models and methods: tiny inputs, a tiny MMIM, the base-model contract checks.

Every base model's test calls `check_base_model(base, batch)`: serialization round trip, eager and XLA calls,
the encode/fuse/head contract, and one `fit` batch of the base model alone (`Supervised`). The throughput
benchmarks' tests take their fake results from here (`fake_keras_result`, `fake_torch_result`).
"""

import dataclasses
import inspect
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_mmsa import backbones
from keras_mmsa.data import pipeline
from keras_mmsa.models import MMIM, BertLSTMMLP, Supervised

T_AUDIO = T_VISION = 16
SHAPES = {"token_ids": (None, 50), "audio": (None, T_AUDIO, 5), "vision": (None, T_VISION, 20)}
# Word-aligned models (EF-LSTM, MFN, MAG-BERT, MAG-XLNet): one audio/vision frame per text token.
ALIGNED_SHAPES = {"token_ids": (None, 50), "audio": (None, 50, 5), "vision": (None, 50, 20)}
_BASE_ARGS = set(inspect.signature(BertLSTMMLP.__init__).parameters) - {"self", "kwargs"}


def spec_batch(tokenizer, n=8, labels=None, stage=None, seed=0, aligned=False):
    """A random batch of the inputs dict (50 tokens, 16 frames of 5 audio / 20 vision features) and labels.

    `aligned=True`: the aligned-input contract: audio [n, 50, 5], vision [n, 50, 20], one frame per token,
    zero outside the real non-special tokens, lengths = the token count (`padding_mask.sum(1)`).
    """
    rng = np.random.default_rng(seed)
    texts = [f"the movie was {'really good' if i % 2 else 'terrible'}" for i in range(n)]
    x = dict(pipeline.tokenize_batch(tokenizer, texts, 50))
    if aligned:
        mask = np.asarray(x["padding_mask"]) & ~np.isin(
            np.asarray(x["token_ids"]), pipeline.special_token_ids(tokenizer)
        )
        tokens = np.asarray(x["padding_mask"]).sum(1).astype("int32")
        x["audio"] = (rng.normal(size=(n, 50, 5)) * mask[..., None]).astype("float32")
        x["audio_lengths"] = tokens
        x["vision"] = (rng.normal(size=(n, 50, 20)) * mask[..., None]).astype("float32")
        x["vision_lengths"] = tokens.copy()
    else:
        x["audio"] = rng.normal(size=(n, T_AUDIO, 5)).astype("float32")
        x["audio_lengths"] = rng.integers(1, T_AUDIO + 1, size=n).astype("int32")
        x["vision"] = rng.normal(size=(n, T_VISION, 20)).astype("float32")
        x["vision_lengths"] = rng.integers(1, T_VISION + 1, size=n).astype("int32")
    if stage is not None:
        x["stage"] = np.full((n,), stage, "int32")
    y = (
        rng.uniform(-3, 3, size=n).astype("float32")
        if labels is None
        else np.asarray(labels, "float32")
    )
    return x, y


def tiny_base(**kwargs):
    """A `BertLSTMMLP` over a fresh tiny BERT (audio 5, vision 20 features unless given)."""
    backbone = backbones.load_text_backbone("tiny")[0]
    kwargs.setdefault("audio_dim", 5)
    kwargs.setdefault("vision_dim", 20)
    return BertLSTMMLP(backbone, **kwargs)


def tiny_mmim(seed=0, batch_size=8, compile=True, **kwargs):
    """A built (and compiled, without XLA) MMIM over `tiny_base`; kwargs go to the base model or to MMIM."""
    keras.utils.set_random_seed(seed)
    base = tiny_base(**{k: v for k, v in kwargs.items() if k in _BASE_ARGS})
    model = MMIM(
        base, batch_size=batch_size, **{k: v for k, v in kwargs.items() if k not in _BASE_ARGS}
    )
    model.build(SHAPES)
    if compile:
        model.compile(**MMIM.default_optimizers("sample"), jit_compile=False)
    return model


def check_base_model(base, batch, optimizers, shapes=SHAPES):
    """The base-model contract on one batch `(x, y)`: encode/fuse/head, serialization, eager/XLA, one fit.

    `shapes`: the build shapes (`ALIGNED_SHAPES` for word-aligned models, with `spec_batch(..., aligned=True)`).
    """
    x, y = batch
    base.build(shapes)
    out = base.forward(x)
    assert set(out) == {"h", "z", "prediction"}
    assert set(out["h"]) == set(base.modalities)
    for m, h in out["h"].items():
        assert tuple(h.shape) == (len(y), base.feature_dims[m]), (m, h.shape)
    assert tuple(out["z"].shape) == (len(y), base.fusion_dim)
    prediction = np.array(base(x))
    assert prediction.shape == (len(y),) and np.all(np.isfinite(prediction))
    np.testing.assert_allclose(np.array(out["prediction"]), prediction, atol=1e-6)
    # serialization round trip: same architecture, same outputs with the same weights
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(base))
    clone.build(shapes)
    clone.set_weights(base.get_weights())
    np.testing.assert_allclose(np.array(clone(x)), prediction, atol=1e-5)
    # a compiled (XLA) call agrees with the eager one
    jitted = tf.function(lambda inputs: base(inputs), jit_compile=True)
    np.testing.assert_allclose(np.array(jitted(x)), prediction, atol=1e-4)
    # groups are disjoint and cover every trainable variable
    groups = base.variable_groups()
    ids = [id(v) for vs in groups.values() for v in vs]
    assert len(ids) == len(set(ids)) == len(base.trainable_variables)
    # the base model alone trains through the engine on the task loss
    model = Supervised(base)
    model.build(shapes)
    model.compile(optimizers=optimizers, jit_compile=False)
    before = [np.array(v) for v in base.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    moved = [not np.allclose(b, np.array(v)) for b, v in zip(before, base.trainable_variables)]
    assert any(moved)
    return model


# The method-vs-PyTorch throughput benchmarks (benchmarks/throughput_common.py): fake results of each side.


def fake_keras_result(case, per_s, rss, compile_s, **fields):
    """A Keras-side result of `case` at `per_s` samples/s and `rss` MiB peak, with the method's `fields`."""
    return {
        "case": dataclasses.asdict(case),
        "label": case.label,
        "backbone": case.backbone,
        "batch_size": case.batch_size,
        "iteration_s": {"median": case.batch_size / per_s, "min": 0.0, "max": 1.0, "iqr": 0.01},
        "samples_per_s": per_s,
        "compile_s": compile_s,
        "peak_rss_mb": rss,
        "finite_losses": True,
        **fields,
    }


def fake_torch_result(backbone, batch_size, per_s, rss, threads, **fields):
    """A PyTorch-side result at `per_s` samples/s and `rss` MiB peak, with the script's own `fields`."""
    return {
        "backbone": backbone,
        "batch_size": batch_size,
        "iteration_s": {"median": batch_size / per_s, "min": 0.0, "max": 1.0, "iqr": 0.02},
        "samples_per_s": per_s,
        "peak_rss_mb": rss,
        "threads": threads,
        "torch_version": "2.13.0+cpu",
        "transformers_version": "4.57.6",
        "finite_losses": True,
        **fields,
    }


def fake_benchmark_sides(monkeypatch, bm, fake_torch, keras_result, calls):
    """Replaces the benchmark module `bm`'s PyTorch runs by `fake_torch`, its Keras runs by
    `keras_result(case)` (each noted in `calls`) and its version lookup."""

    def fake_keras(case, settings, timeout):
        calls.append(("keras", case.backbone, case.batch_size))
        return keras_result(case)

    monkeypatch.setattr(bm, "run_torch", fake_torch)
    monkeypatch.setattr(bm, "run_case_isolated", fake_keras)
    monkeypatch.setattr(bm, "_versions", lambda: "TensorFlow x")


def run_script(script, *args, timeout=1200):
    """`python script args...` with this interpreter; asserts it succeeds."""
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
