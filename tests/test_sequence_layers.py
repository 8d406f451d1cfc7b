"""SequenceEncoder (LSTM with lengths) and MLPFusion: semantics, serialization, symbolic call, XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa.layers import sequence_encoder as se
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


# ---------------------------------------------------------------- the packed recurrence (speed path)


def _grads(enc, x, lengths, fn, jit):
    @tf.function(jit_compile=jit)
    def run(x, lengths):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x, lengths, training=False)
            loss = tf.reduce_sum(tf.sin(out) * tf.range(1.0, out.shape[-1] + 1.0))
        return out, tape.gradient(loss, [x] + enc.trainable_variables)

    return run(tf.constant(x), tf.constant(lengths))


@pytest.mark.parametrize("bidirectional,num_layers,jit", [(True, 2, False), (False, 1, False)])
def test_packed_call_matches_the_keras_lstm_with_gradients(bidirectional, num_layers, jit):
    """`call` (packed rows, explicit backward) equals `reference_call` (masked Keras LSTM): values and grads."""
    keras.utils.set_random_seed(3)
    enc = SequenceEncoder(6, 4, num_layers=num_layers, bidirectional=bidirectional)
    x = _seq(b=9, t=14, d=3, seed=1)
    lengths = np.array([14, 1, 5, 9, 3, 14, 2, 7, 0], "int32")  # a 0 is clamped to one frame
    enc(x, lengths)
    out, grads = _grads(enc, x, lengths, enc.call, jit)
    ref_out, ref_grads = _grads(enc, x, lengths, enc.reference_call, jit)
    np.testing.assert_allclose(np.array(out), np.array(ref_out), atol=1e-5)
    for g, r, v in zip(grads, ref_grads, [None] + enc.trainable_variables):
        assert g is not None, v
        name = getattr(v, "path", "inputs")
        np.testing.assert_allclose(np.array(g), np.array(r), atol=2e-5, err_msg=name)


def test_first_fit_decreasing_packs_without_overlap():
    rng = np.random.default_rng(0)
    for trial in range(20):
        cap = int(rng.integers(5, 40))
        lengths = rng.integers(1, cap + 1, size=int(rng.integers(1, 33))).astype("int32")
        row, offset, used = (np.array(v) for v in se.first_fit_decreasing(lengths, cap))
        cells = {}
        for b, n in enumerate(lengths):
            assert 0 <= offset[b] and offset[b] + n <= cap, (trial, b)
            for s in range(offset[b], offset[b] + n):
                assert (row[b], s) not in cells, "two sequences share a cell"
                cells[(row[b], s)] = b
        assert int(used) == len(set(row.tolist())) == row.max() + 1
        # first-fit decreasing never needs more than ~11/9 of the optimum (+1); the optimum >= sum / cap
        assert int(used) <= int(np.ceil(11 / 9 * np.ceil(lengths.sum() / cap))) + 1


def test_every_row_budget_gives_the_reference_result():
    """Short sequences pack into ceil(3B/8) rows, longer ones need B/2 or all B rows: all three paths agree."""
    keras.utils.set_random_seed(4)
    enc = SequenceEncoder(5, 3)
    x = _seq(b=8, t=8, d=2, seed=2)
    enc(x, np.ones(8, "int32"))
    budgets = [int(np.ceil(f * 8)) for f in se.PACKING_FRACTIONS]
    for branch, lengths in enumerate(
        ([2, 2, 1, 3, 1, 2, 2, 1], [8, 8, 8, 1, 2, 1, 1, 1], [8, 8, 8, 8, 8, 8, 8, 8])
    ):
        lengths = np.array(lengths, "int32")
        _, _, used = se.first_fit_decreasing(lengths, 8)
        assert sum(int(used) > b for b in budgets[:-1]) == branch
        out, grads = _grads(enc, x, lengths, enc.call, False)
        ref_out, ref_grads = _grads(enc, x, lengths, enc.reference_call, False)
        np.testing.assert_allclose(np.array(out), np.array(ref_out), atol=1e-5)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(np.array(g), np.array(r), atol=2e-5)


def test_packed_call_and_gradients_under_xla_with_a_dynamic_batch():
    """XLA-compiled, traced with an unknown batch size (as `fit` may trace it): values and gradients equal
    the Keras LSTM's."""
    keras.utils.set_random_seed(5)
    enc = SequenceEncoder(4, 2)
    x = _seq(b=5, t=10, d=3)
    lengths = np.array([10, 3, 1, 6, 2], "int32")
    enc(x, lengths)

    def value_and_grads(fn):
        def run(x, n):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = fn(x, n, training=False)
                loss = tf.reduce_sum(tf.sin(out) * tf.range(1.0, 3.0))
            return out, tape.gradient(loss, [x] + enc.trainable_variables)

        return run

    spec = [tf.TensorSpec([None, 10, 3]), tf.TensorSpec([None], tf.int32)]
    packed = tf.function(value_and_grads(enc.call), jit_compile=True, input_signature=spec)
    out, grads = packed(tf.constant(x), tf.constant(lengths))
    ref_out, ref_grads = value_and_grads(enc.reference_call)(tf.constant(x), tf.constant(lengths))
    np.testing.assert_allclose(np.array(out), np.array(ref_out), atol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(np.array(g), np.array(r), atol=2e-5)
