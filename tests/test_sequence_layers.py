"""SequenceEncoder (LSTM with lengths) and MLPFusion: semantics, serialization, symbolic call, XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa.layers.mlp_fusion import MLPFusion
from keras_mmsa.layers.sequence_encoder import SequenceEncoder


def _seq(b=3, t=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, t, d)).astype("float32")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_final_state_ignores_padding_like_a_packed_sequence(bidirectional):
    """Encoding a padded sequence with its length equals encoding the unpadded sequence alone."""
    keras.utils.set_random_seed(0)
    enc = SequenceEncoder(6, 4, bidirectional=bidirectional, num_layers=2)
    x = _seq()
    lengths = np.array([3, 12, 7], "int32")
    garbage = x.copy()
    for b, n in enumerate(lengths):
        garbage[b, n:] = 100.0  # whatever sits after the length must not matter
    out = np.array(enc(garbage, lengths))
    for b, n in enumerate(lengths):
        alone = np.array(enc(x[b : b + 1, :n], np.array([n], "int32")))
        np.testing.assert_allclose(out[b], alone[0], atol=1e-5)


def test_zero_length_is_clamped_to_one_frame():
    enc = SequenceEncoder(4, 2)
    x = _seq(b=2)
    a = np.array(enc(x, np.array([0, 5])))
    b = np.array(enc(x, np.array([1, 5])))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.all(np.isfinite(a))


def test_sequence_encoder_serialization_and_symbolic_call():
    enc = SequenceEncoder(6, 3, bidirectional=True, dropout=0.2, name="enc")
    x = _seq(b=2)
    lengths = np.array([4, 9], "int32")
    y = np.array(enc(x, lengths))
    clone = SequenceEncoder.from_config(enc.get_config())
    clone(x, lengths)
    clone.set_weights(enc.get_weights())
    np.testing.assert_allclose(np.array(clone(x, lengths)), y, atol=1e-6)
    assert clone.get_config() == enc.get_config()
    seq_in = keras.Input((12, 5))
    len_in = keras.Input((), dtype="int32")
    out = SequenceEncoder(6, 3)(seq_in, len_in)
    assert tuple(out.shape) == (None, 3)


def test_sequence_encoder_trains_under_xla():
    enc = SequenceEncoder(4, 1)
    x = tf.constant(_seq(b=8, t=20, d=3))
    lengths = tf.constant(np.arange(1, 9, dtype="int32") * 2)
    enc(x, lengths)

    @tf.function(jit_compile=True)
    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(enc(x, lengths, training=True) ** 2)
        return tape.gradient(loss, enc.trainable_variables)

    g = grads()
    assert all(gi is not None and np.all(np.isfinite(gi)) for gi in g)


def test_mlp_fusion_shapes_dropout_and_roundtrip():
    fusion = MLPFusion(8, dropout=0.5)
    parts = [np.ones((4, 3), "float32"), np.ones((4, 5), "float32")]
    z, y = fusion(parts)
    assert z.shape == (4, 8) and y.shape == (4,)
    assert np.all(np.abs(np.array(z)) <= 1.0)  # tanh
    z_eval, _ = fusion(parts, training=False)
    z_eval2, _ = fusion(parts, training=False)
    np.testing.assert_allclose(np.array(z_eval), np.array(z_eval2))
    z_train, _ = fusion(parts, training=True)
    assert not np.allclose(np.array(z_train), np.array(z_eval))
    clone = MLPFusion.from_config(fusion.get_config())
    clone(parts)
    clone.set_weights(fusion.get_weights())
    np.testing.assert_allclose(np.array(clone(parts)[1]), np.array(fusion(parts)[1]), atol=1e-6)
