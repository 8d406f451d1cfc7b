import numpy as np
import tensorflow as tf

from keras_mmsa.models.self_mm import ulgm


def _np_label(f_s, f_f, cs, cf, y_f, h):
    def delta(f, c):
        dp = np.linalg.norm(f - c[0], axis=-1)
        dn = np.linalg.norm(f - c[1], axis=-1)
        return (dn - dp) / (dp + 1e-8)

    ds, df = delta(f_s, cs), delta(f_f, cf)
    y = 0.5 * ds / (df + 1e-8) * y_f + 0.5 * (y_f + ds - df)
    return np.clip(y, -h, h)


def test_unimodal_label_matches_numpy_closed_form():
    rng = np.random.default_rng(0)
    f_s = rng.normal(size=(8, 4)).astype("float32")
    f_f = rng.normal(size=(8, 4)).astype("float32")
    cs = (np.ones(4, "float32"), -np.ones(4, "float32"))
    cf = (np.full(4, 0.5, "float32"), np.full(4, -2.0, "float32"))
    y_f = rng.uniform(-3, 3, size=8).astype("float32")
    got = ulgm.unimodal_label(
        y_f,
        ulgm.relative_distance(f_s, *cs),
        ulgm.relative_distance(f_f, *cf),
        3.0,
    )
    np.testing.assert_allclose(
        np.asarray(got), _np_label(f_s, f_f, cs, cf, y_f, 3.0), rtol=1e-4, atol=1e-4
    )
    assert np.all(np.abs(np.asarray(got)) <= 3.0)


def test_class_centres_momentum_and_empty_class():
    f = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, -2.0]], "float32")
    prev = (np.array([10.0, 10.0], "float32"), np.array([-4.0, 4.0], "float32"))
    pos, neg = ulgm.class_centres(
        f, np.array([1.0, 2.0, -1.0], "float32"), previous=prev, momentum=0.9
    )
    np.testing.assert_allclose(pos, 0.9 * prev[0] + 0.1 * np.array([2.0, 0.0]), rtol=1e-6)
    np.testing.assert_allclose(neg, 0.9 * prev[1] + 0.1 * np.array([0.0, -2.0]), rtol=1e-6)
    # No negative example: the negative centre stays where it was.
    _, neg = ulgm.class_centres(
        f, np.array([1.0, 2.0, 0.0], "float32"), previous=prev, momentum=0.5
    )
    np.testing.assert_allclose(neg, prev[1])


def test_momentum_of_epochs():
    mem = np.array([1.0, -1.0], "float32")
    new = np.array([3.0, 0.0], "float32")
    np.testing.assert_allclose(
        ulgm.momentum_of_epochs(mem, new, 2), 1 / 3 * mem + 2 / 3 * new, rtol=1e-6
    )
    # Epoch 1 would replace the memory outright.
    np.testing.assert_allclose(ulgm.momentum_of_epochs(mem, new, 1), new)


def test_weighted_l1_weights_are_detached():
    y_s = tf.Variable([0.5, -1.0])
    y_f = tf.Variable([1.0, 1.0])
    pred = tf.Variable([0.0, 0.0])
    with tf.GradientTape() as tape:
        loss = ulgm.weighted_l1(pred, [1.0, -1.0], y_s, y_f)
    g_pred, g_s, g_f = tape.gradient(loss, [pred, y_s, y_f])
    assert g_s is None and g_f is None
    w = np.tanh(np.abs(np.array([0.5, -1.0]) - 1.0))
    np.testing.assert_allclose(float(loss), np.mean(w * [1.0, 1.0]), rtol=1e-6)
    np.testing.assert_allclose(g_pred.numpy(), -w / 2 * np.array([1, -1]), rtol=1e-6)
