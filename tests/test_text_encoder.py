"""TextEncoder: [CLS] vector of the last layer, symbolic/eager, serialization, freezing, XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa import backbones
from keras_mmsa.layers.text_encoder import TextEncoder

L = 7


@pytest.fixture(scope="module")
def tiny():
    return backbones.load_text_backbone("tiny", seed=1)


def _inputs(batch=3):
    rng = np.random.default_rng(0)
    lengths = np.array([L, 4, 2])[:batch]
    token_ids = rng.integers(5, 200, size=(batch, L)).astype("int32")
    token_ids[:, 0] = 2
    mask = np.arange(L)[None, :] < lengths[:, None]
    token_ids[~mask] = 0
    return {
        "token_ids": token_ids,
        "padding_mask": mask,
        "segment_ids": np.zeros((batch, L), "int32"),
        "audio": np.zeros((batch, 5, 2), "float32"),  # other modalities are ignored
    }


def _symbolic_inputs():
    return {
        "token_ids": keras.Input((L,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input((L,), dtype="bool", name="padding_mask"),
        "segment_ids": keras.Input((L,), dtype="int32", name="segment_ids"),
    }


def test_eager_call_is_the_last_layer_cls_vector(tiny):
    backbone, _ = tiny
    x = _inputs()
    encoder = TextEncoder(backbone)
    h = keras.ops.convert_to_numpy(encoder(x))
    assert h.shape == (3, 64)
    sequence = backbone(
        {
            "token_ids": x["token_ids"],
            "padding_mask": x["padding_mask"].astype("int32"),
            "segment_ids": x["segment_ids"],
        }
    )["sequence_output"]
    np.testing.assert_allclose(h, keras.ops.convert_to_numpy(sequence)[:, 0], atol=1e-6)
    # Padding does not leak into the [CLS] vector: more padding, same vector.
    longer = {k: np.pad(v, [(0, 0), (0, 3)]) for k, v in x.items() if k != "audio"}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder(longer)), h, atol=1e-5)
    assert TextEncoder(backbone, output_mode="sequence")(x).shape == (3, L, 64)
    pooled = keras.ops.convert_to_numpy(TextEncoder(backbone, output_mode="pooled")(x))
    assert pooled.shape == (3, 64) and np.all(np.abs(pooled) <= 1.0)  # tanh pooler


def test_symbolic_call_and_keras_round_trip(tiny, tmp_path):
    backbone, _ = tiny
    inputs = _symbolic_inputs()
    encoder = TextEncoder(backbone, name="text_encoder")
    outputs = keras.layers.Dense(1)(encoder(inputs))
    model = keras.Model(inputs, outputs)
    assert model.output.shape == (None, 1)
    x = {k: v for k, v in _inputs().items() if k != "audio"}
    expected = keras.ops.convert_to_numpy(model(x))
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)), expected, atol=1e-6)
    # get_config / from_config alone rebuilds the same architecture (the backbone serialized inside).
    clone = TextEncoder.from_config(encoder.get_config())
    assert clone.output_mode == "cls"
    assert clone.backbone.get_config() == backbone.get_config()
    clone.set_weights(encoder.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(encoder(x)), atol=1e-6
    )


def test_trainable_freezes_the_backbone():
    backbone, _ = backbones.load_text_backbone("tiny", seed=2)
    inputs = _symbolic_inputs()
    encoder = TextEncoder(backbone)
    model = keras.Model(inputs, keras.layers.Dense(1)(encoder(inputs)))
    x = {k: v for k, v in _inputs().items() if k != "audio"}
    y = np.ones((3, 1), "float32")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [w.copy() for w in backbone.get_weights()]
    model.fit(x, y, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, backbone.get_weights()))

    encoder.trainable = False
    assert encoder.trainable_weights == [] and backbone.trainable_weights == []
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")  # recompile after freezing
    frozen = [w.copy() for w in backbone.get_weights()]
    head = [w.copy() for w in model.layers[-1].get_weights()]
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(frozen, backbone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(head, model.layers[-1].get_weights()))

    # Unfreezing makes everything trainable again except BERT's pooler, which "cls" never uses.
    encoder.trainable = True
    names = {w.path for w in encoder.trainable_weights}
    assert len(names) == len(backbone.weights) - 2
    assert not any("pooled_dense" in name for name in names)


def test_jit_compiled_call(tiny):
    backbone, _ = tiny
    encoder = TextEncoder(backbone)
    x = {k: tf.constant(v) for k, v in _inputs().items()}
    eager = keras.ops.convert_to_numpy(encoder(x))
    compiled = tf.function(lambda batch: encoder(batch, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(x).numpy(), eager, atol=1e-5)


def test_errors(tiny):
    backbone, _ = tiny
    with pytest.raises(ValueError, match="output_mode"):
        TextEncoder(backbone, output_mode="mean")
    with pytest.raises(KeyError, match="padding_mask"):
        TextEncoder(backbone)({"token_ids": np.zeros((1, 3), "int32")})
