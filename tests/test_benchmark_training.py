"""The training-throughput benchmark's code path on tiny shapes (the real run: benchmarks/training_throughput.py)."""

import importlib.util
import json

import numpy as np
import pytest
from harness import fake_torch_result

from benchmarks import training_throughput as bm

TINY_SHAPES = bm.Shapes(text_len=8, audio_len=12, audio_dim=5, vision_len=16, vision_dim=20)


def test_synthetic_batches_follow_the_spec_and_mosi_like_lengths():
    batches = bm.synthetic_batches(2, 64, vocabulary_size=100, seed=1)
    x, y = batches[0]
    assert x["token_ids"].shape == (64, 50) and x["audio"].shape == (64, 375, 5)
    assert x["vision"].shape == (64, 500, 20) and y.shape == (64,)
    for m, steps in (("audio", 375), ("vision", 500)):
        n = x[f"{m}_lengths"]
        assert n.min() >= 1 and n.max() <= steps
        assert np.all(x[m][np.arange(steps)[None, :] >= n[:, None]] == 0)  # zero padding
        # MOSI clips: median ~3.4 s of a 16.7 s window -> most sequences far shorter than the padding
        assert 0.1 < np.median(n) / steps < 0.35
    assert np.all(x["token_ids"][~x["padding_mask"]] == 0)
    assert x["padding_mask"].sum(1).min() >= 3
    # same seed, same batches (the PyTorch reference reads the same ones)
    again = bm.synthetic_batches(2, 64, vocabulary_size=100, seed=1)
    np.testing.assert_array_equal(again[1][0]["vision"], batches[1][0]["vision"])


def test_case_validation_and_default_cases():
    with pytest.raises(ValueError, match="alternation"):
        bm.Case(alternation="sometimes")
    full = bm.default_cases()
    labels = {c.label for c in full}
    assert len(labels) == len(full)
    for bb in bm.BACKBONES:
        for b in (32, 64):
            for jit in (True, False):
                for alt in bm.ALTERNATIONS:
                    assert bm.Case(bb, b, jit, alt) in full
    assert all(c.backbone == "tiny" for c in bm.default_cases(quick=True))


def _fake(case, per_s, rss=500.0):
    import dataclasses

    return {
        "case": dataclasses.asdict(case),
        "label": case.label,
        "iteration_s": {"median": case.batch_size / per_s, "min": 0.0, "max": 1.0, "iqr": 0.1},
        "iteration_cpu_s": {"median": case.batch_size / per_s},
        "samples_per_s": per_s,
        "compile_s": 1.0,
        "peak_rss_mb": rss,
    }


def test_ratios_and_markdown():
    packed, keras_lstm = (
        bm.Case("tiny", 32, True, "epoch"),
        bm.Case("tiny", 32, True, "epoch", "keras"),
    )
    threefry = bm.Case("tiny", 32, True, "epoch", dropout_rng="threefry")
    results = [_fake(packed, 300.0), _fake(keras_lstm, 200.0), _fake(threefry, 330.0)]
    torch = fake_torch_result("tiny", 32, per_s=64.0, rss=1000.0, threads=1)  # 0.5 s per iteration
    bm.add_ratios(results, [torch])
    assert results[0]["vs_torch"] == pytest.approx(300 / 64)
    assert results[0]["rss_vs_torch"] == pytest.approx(0.5)
    assert results[0]["vs_keras_lstm"] == pytest.approx(1.5)
    assert "vs_keras_lstm" not in results[1]
    assert results[2]["vs_default_dropout"] == pytest.approx(1.1)
    meta = {
        "date": "d",
        "machine": "m",
        "cpus": 2,
        "versions": "v",
        "load_before": 1.0,
        "load_after": 2.0,
        "warmup": 1,
        "repeats": 5,
        "notes": "n",
    }
    md = bm.markdown_table(results, [torch], meta)
    assert "| tiny B=32 xla per-epoch | 0.107 |" in md and "| 4.69 | 1.50 / 1.50 |" in md
    assert "PyTorch mmsa MMIM tiny B=32" in md


def test_measure_case_on_tiny_shapes():
    settings = bm.Settings(shapes=TINY_SHAPES, warmup=0, repeats=2, num_batches=2)
    report = bm.run_benchmark(
        [bm.Case("tiny", 4, False, "epoch")],
        settings,
        out_dir=None,
        isolate=False,
        log=lambda m: None,
    )
    (r,) = report["results"]
    assert r["finite_losses"]
    assert r["iteration_s"]["min"] <= r["iteration_s"]["median"] <= r["iteration_s"]["max"]
    assert r["samples_per_s"] == pytest.approx(4 / r["iteration_s"]["median"])
    assert r["peak_rss_mb"] > 50 and r["first_iteration_s"] > 0
    json.dumps(report)  # serializable as written


def test_isolated_case_reports_its_own_peak_memory():
    settings = bm.Settings(shapes=TINY_SHAPES, warmup=0, repeats=1, num_batches=1)
    r = bm.run_case_isolated(bm.Case("tiny", 2, False, "batch", "keras"), settings, timeout=600)
    assert r["label"] == "tiny B=2 no-xla per-batch, keras LSTM" and r["finite_losses"]
    assert r["peak_rss_mb"] >= r["rss_after_build_mb"] > 100


def test_threefry_dropout_only_changes_xla_functions():
    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow import random as tf_random

    from keras_mmsa.engine.xla_dropout import install_xla_dropout

    original = tf_random.dropout
    try:
        replaced = install_xla_dropout()
        assert replaced in (None, original)  # idempotent: None if the engine installed it already
        layer = keras.layers.Dropout(0.5, seed=1)
        x = tf.ones((64, 64))
        eager = np.array(layer(x, training=True))
        xla = np.array(tf.function(lambda v: layer(v, training=True), jit_compile=True)(x))
        for out in (eager, xla):
            assert set(np.unique(out)) <= {0.0, 2.0} and 0.3 < (out == 0).mean() < 0.7
    finally:
        tf_random.dropout = replaced or original


def test_jax_cases_ratios_and_the_three_backends_table():
    with pytest.raises(ValueError, match="XLA"):
        bm.Case("tiny", 32, False, "epoch", backend="jax")
    with pytest.raises(ValueError, match="backend"):
        bm.Case(backend="torch")
    quick = bm.default_cases(quick=True)
    cases = bm.with_jax_cases(quick)
    jax = [c for c in cases if c.backend == "jax"]
    # one JAX twin per XLA packed default-dropout case, labelled as such
    assert cases[: len(quick)] == quick and len(jax) == 2
    assert {c.alternation for c in jax} == set(bm.ALTERNATIONS)
    assert all(c.encoder == "packed" and c.label.endswith(", jax") for c in jax)
    assert bm.with_jax_cases(cases) == cases
    on_tf, on_jax = (
        bm.Case("tiny", 32, True, "epoch"),
        bm.Case("tiny", 32, True, "epoch", backend="jax"),
    )
    results = [_fake(on_tf, 300.0, rss=600.0), _fake(on_jax, 450.0, rss=900.0)]
    torch = fake_torch_result("tiny", 32, per_s=64.0, rss=1000.0, threads=1)  # 0.5 s per iteration
    bm.add_ratios(results, [torch])
    assert results[1]["vs_tensorflow"] == pytest.approx(1.5)
    assert results[1]["rss_vs_tensorflow"] == pytest.approx(1.5)
    assert "vs_tensorflow" not in results[0]
    rows = [r for r in bm.three_backends_table(results, [torch]) if r.startswith("| tiny")]
    assert rows == [
        "| tiny B=32 per-epoch | 0.107 | 300.0 | 600 | 0.071 | 450.0 | 900 | 0.500 | 64.0 | 1000 "
        "| 1.50 | 4.69 | 7.03 |"
    ]
    assert bm.three_backends_table(results[:1], [torch]) == []


@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not importable: no JAX column"
)
def test_isolated_case_runs_on_the_jax_trainer():
    settings = bm.Settings(shapes=TINY_SHAPES, warmup=0, repeats=1, num_batches=1)
    case = bm.Case("tiny", 2, True, "epoch", backend="jax")
    r = bm.run_case_isolated(case, settings, timeout=600)
    assert r["backend"] == "jax" and r["backend_version"].startswith("jax ")
    assert r["label"] == "tiny B=2 xla per-epoch, jax" and r["finite_losses"]
    assert r["peak_rss_mb"] >= r["rss_after_build_mb"] > 100


def test_base_models_jax_cases_and_three_backends_table():
    from benchmarks import base_models_throughput as bmb

    with pytest.raises(ValueError, match="XLA"):
        bmb.Case("tfn", jit_compile=False, backend="jax")
    on_tf, on_jax = bmb.Case("tfn"), bmb.Case("tfn", backend="jax")
    assert on_jax.label == "tfn (cached) B=32 xla, jax" and on_tf.label == "tfn (cached) B=32 xla"

    def fake(case, s, rss):
        import dataclasses

        r = _fake(case, 32 / s, rss)
        r["case"] = dataclasses.asdict(case)
        return r

    ref = {
        "model": "tfn",
        "text": "cached",
        "is_reference": True,
        "iteration_s": {"median": 0.4},
        "samples_per_s": 80.0,
        "peak_rss_mb": 700.0,
        "torch_version": "n/a",
    }
    report = {
        "results": [fake(on_tf, 0.2, 500.0), fake(on_jax, 0.1, 800.0)],
        "torch_reference": [ref],
    }
    rows = [r for r in bmb.three_backends_table(report) if r.startswith("| tfn")]
    assert rows == [
        "| tfn (cached) B=32 | 0.2000 | 160.0 | 500 | 0.1000 | 320.0 | 800 | 0.4000 | 80.0 | 700 "
        "| 2.00 | 2.00 | 4.00 |"
    ]
    assert bmb.three_backends_table(dict(report, results=report["results"][:1])) == []
