"""Sparsemax against its closed form (Martins & Astudillo 2016, Algorithm 1) on numpy."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_mmsa.layers import Sparsemax


def _reference(z):
    """Sorting-based sparsemax of one vector in numpy."""
    zs = np.sort(z)[::-1]
    k = np.arange(1, len(z) + 1)
    cumsum = np.cumsum(zs)
    k_z = k[1 + k * zs > cumsum].max()
    tau = (cumsum[k_z - 1] - 1) / k_z
    return np.maximum(z - tau, 0.0)


def test_matches_closed_form_and_is_sparse():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(16, 7)).astype("float32") * 2.0
    out = np.asarray(Sparsemax()(z))
    ref = np.stack([_reference(row) for row in z.astype("float64")])
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    assert (out == 0).any()  # sparse: some exact zeros
    assert (out >= 0).all()
    # Known values: [2, 1, -1] -> [1, 0, 0]; equal scores -> uniform; shift invariance.
    np.testing.assert_allclose(np.asarray(Sparsemax()(np.array([[2.0, 1.0, -1.0]]))), [[1, 0, 0]])
    np.testing.assert_allclose(np.asarray(Sparsemax()(np.array([[0.3, 0.3]]))), [[0.5, 0.5]])
    np.testing.assert_allclose(np.asarray(Sparsemax()(z + 5.0)), out, atol=1e-5)


def test_mask_gives_zero_weight_and_renormalizes():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 6)).astype("float32")
    z[:, 4:] = 50.0  # huge scores on masked positions must not leak
    mask = np.ones((4, 6), bool)
    mask[:, 4:] = False
    mask[3] = False  # a fully masked row -> zeros, not NaN
    out = np.asarray(Sparsemax()(z, mask=mask))
    assert np.all(out[:, 4:] == 0)
    for i in range(3):
        np.testing.assert_allclose(out[i, :4], _reference(z[i, :4].astype("float64")), atol=1e-5)
    assert np.all(out[3] == 0) and np.isfinite(out).all()


def test_gradient_is_the_closed_form_jacobian():
    z = tf.constant([[1.0, 0.8, 0.1, -2.0]])
    mask = tf.constant([[True, True, True, False]])
    with tf.GradientTape() as tape:
        tape.watch(z)
        p = Sparsemax()(z, mask=mask)
        loss = ops.sum(p * tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    grad = tape.gradient(loss, z).numpy()[0]
    s = (p.numpy()[0] > 0).astype(float)
    jac = np.diag(s) - np.outer(s, s) / s.sum()
    np.testing.assert_allclose(grad, jac @ np.array([1.0, 2.0, 3.0, 4.0]), atol=1e-6)
    assert np.isfinite(grad).all()


def test_jit_and_serialization():
    layer = Sparsemax()
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    z = np.random.default_rng(2).normal(size=(3, 5)).astype("float32")
    fn = tf.function(lambda x: restored(x), jit_compile=True)
    np.testing.assert_allclose(fn(z).numpy(), np.asarray(layer(z)), atol=1e-6)
