"""The JAX stage trainer (`keras_mmsa.engine.jax_trainer`), checked from the TensorFlow default suite.

Keras fixes its backend at import, so the JAX side runs in subprocesses with KERAS_BACKEND=jax:

- the engine's stage-discipline tests (`test_multi_stage_model.py`) pass unchanged on JAX;
- the same toy training job from the same weights gives the same weights on both trainers (aux stages on
  detached features before the main objective, repeats, per-stage clipping, state written after each stage,
  stage-id batches);
- weights trained on JAX load into the TensorFlow model (`save_weights` / `load_weights`) and predict the same,
  so the export path (SavedModel, TensorFlow) serves a JAX-trained model;
- the packed LSTM of `SequenceEncoder` (made for TensorFlow/XLA) gives the Keras LSTM's values and gradients
  under JAX (`test_sequence_layers.py` checks it with TensorFlow tapes);
- (large) the tiny learning checks of `test_backend_learning.py` on JAX.

Skipped when jax is not importable.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None,
        reason="jax is not importable (pip install 'jax[cpu]'): the JAX trainer cannot be checked",
    ),
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="compares the JAX trainer (subprocess) with the TensorFlow one (this process)",
    ),
]


def run_on_jax(args, timeout=900):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (proc.stdout[-6000:], proc.stderr[-6000:])
    return proc.stdout


def _pytest_on_jax(*files):
    return run_on_jax(["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-s", *files])


def test_stage_discipline_tests_pass_on_jax():
    out = _pytest_on_jax("tests/test_multi_stage_model.py")
    assert " passed" in out and "failed" not in out and "skipped" not in out, out[-2000:]


def test_both_trainers_give_the_same_weights_from_the_same_start(tmp_path):
    sys.path.insert(0, str(TESTS))
    import backend_worker

    init = tmp_path / "init.weights.h5"
    keras.utils.set_random_seed(3)
    backend_worker.toy_model().save_weights(init)
    backend_worker.toy(init, tmp_path / "tf.weights.h5")
    run_on_jax(
        [str(TESTS / "backend_worker.py"), "toy", str(init), str(tmp_path / "jax.weights.h5")]
    )

    start, on_tf, on_jax = (backend_worker.toy_model() for _ in range(3))
    start.load_weights(init)
    on_tf.load_weights(tmp_path / "tf.weights.h5")
    on_jax.load_weights(tmp_path / "jax.weights.h5")
    assert (
        float(on_jax.state_calls) == float(on_tf.state_calls) == 8.0
    )  # 4 per-batch + 4 stage-1 batches
    assert float(on_jax.aux_calls) == float(on_tf.aux_calls) == 8.0
    for v0, vt, vj in zip(start.weights, on_tf.weights, on_jax.weights):
        assert (
            not np.allclose(np.array(v0), np.array(vt)) or "calls" in v0.path or "last" in v0.path
        )
        np.testing.assert_allclose(
            np.array(vj), np.array(vt), rtol=1e-4, atol=1e-5, err_msg=v0.path
        )
    for g in ("critic", "model"):
        assert int(on_jax.stage_optimizers[g].iterations) == int(
            on_tf.stage_optimizers[g].iterations
        )


def test_weights_trained_on_jax_load_into_the_tensorflow_model(tmp_path):
    sys.path.insert(0, str(TESTS))
    from harness import SHAPES, tiny_base
    from test_backend_learning import synthetic

    from keras_mmsa import backbones
    from keras_mmsa.models import BertLSTMMLP, Supervised
    from keras_mmsa.training.export import export_saved_model

    run_on_jax([str(TESTS / "backend_worker.py"), "supervised", str(tmp_path)])
    model = Supervised(tiny_base())
    model.build(SHAPES)
    model.compile(
        optimizers=BertLSTMMLP.optimizers_from_settings(BertLSTMMLP.preset("sample")["train"])
    )
    model.load_weights(tmp_path / "model.weights.h5")
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = synthetic(tokenizer)
    on_jax = np.load(tmp_path / "predictions.npy")
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), on_jax, atol=1e-4)
    # ... and the TensorFlow export path serves it
    import tensorflow as tf

    lengths = {"text": 50, "audio": SHAPES["audio"][1], "vision": SHAPES["vision"][1]}
    export_saved_model(model, tmp_path / "export", lengths=lengths)
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serve"](
        **{k: tf.constant(v) for k, v in x.items()}
    )["sentiment"]
    np.testing.assert_allclose(served.numpy(), on_jax, atol=1e-4)


def test_packed_lstm_matches_the_keras_lstm_on_jax():
    out = run_on_jax([str(TESTS / "backend_worker.py"), "packed"])
    assert "matches the reference" in out


@pytest.mark.large
def test_learning_checks_pass_on_jax():
    out = _pytest_on_jax("tests/test_backend_learning.py")
    # on JAX nothing in the file is `large` or skipped: every check runs and passes
    assert " passed" in out, out[-2000:]
    assert not any(w in out for w in ("failed", "error", "skipped", "deselected")), out[-2000:]
