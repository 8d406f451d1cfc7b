"""The estimator layers: numerics against numpy, the GMM memory, fallbacks, serialization, XLA."""

import math

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf
from keras import ops

from keras_mmsa import estimators as E

RNG = np.random.default_rng(1)


def rand(*shape):
    return RNG.standard_normal(shape).astype("float32")


def roundtrip(layer, tmp_path, *arrays):
    """Symbolic call inside a functional model, .keras save/load, same config and same outputs."""
    inputs = [keras.Input(a.shape[1:], batch_size=a.shape[0]) for a in arrays]
    out = layer(*inputs)
    out = out[0] if isinstance(out, (tuple, list)) else out
    model = keras.Model(inputs, ops.reshape(out, (1,)) if len(out.shape) == 0 else out)
    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer(layer.name).get_config() == layer.get_config()
    np.testing.assert_allclose(loaded(list(arrays)), model(list(arrays)), rtol=1e-5, atol=1e-6)
    return loaded.get_layer(layer.name)


# --------------------------------------------------------------------------------- GaussianConditional


def test_gaussian_conditional_likelihoods_and_bound(tmp_path):
    q = E.GaussianConditional(y_dim=3, hidden_dim=8, logvar_bound=2.0)
    x, y = rand(6, 5), rand(6, 3)
    mu, logvar = q(x)
    assert mu.shape == (6, 3) and logvar.shape == (6, 3)
    ll = q.log_likelihood(x, y)
    np.testing.assert_allclose(
        ll, E.gaussian_log_likelihood(y=y, mean=mu, logvar=logvar), rtol=1e-6
    )
    np.testing.assert_allclose(np.diag(q.log_likelihood_matrix(x, y)), ll, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q.nll_loss(x, y), -np.mean(ll), rtol=1e-6)
    # the log-variance is bounded for any input
    _, lv = q(1e4 * rand(4, 5))
    assert np.all(np.abs(ops.convert_to_numpy(lv)) <= 2.0)
    roundtrip(q, tmp_path, x)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        q.log_likelihood(x, rand(6, 4))


def test_variance_free_flag_reproduces_official_form():
    q = E.GaussianConditional(y_dim=2, hidden_dim=4, variance_free=True)
    x, y = rand(5, 3), rand(5, 2)
    mu, logvar = (ops.convert_to_numpy(t) for t in q(x))
    np.testing.assert_allclose(
        q.log_likelihood(x, y), -((mu - y) ** 2 / (2 * np.exp(logvar))).sum(-1), rtol=1e-5
    )


def test_club_layer_matches_bound_functions(tmp_path):
    club = E.CLUB(y_dim=3, hidden_dim=6)
    x, y = rand(8, 4), rand(8, 3)
    L = ops.convert_to_numpy(club.conditional.log_likelihood_matrix(x, y))
    np.testing.assert_allclose(club(x, y), np.diag(L).mean() - L.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(club.learning_loss(x, y), -np.diag(L).mean(), rtol=1e-4)
    roundtrip(club, tmp_path, x, y)
    sample = E.CLUB(y_dim=3, hidden_dim=6, sample=True, no_fixed_point=True, seed=5)
    v = float(sample(x, y))
    assert math.isfinite(v)
    mask = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)
    assert math.isfinite(float(sample(x, y, sample_mask=mask)))


# ---------------------------------------------------------------------------------------- CPCPredictor


def np_cpc_loss(g, h, tau=1.0):
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    s = g @ h.T / tau
    return -np.mean(np.diag(s) - scipy.special.logsumexp(s, axis=1)), np.exp(np.diag(s))


def test_cpc_predictor_matches_mmim_eq_10_11(tmp_path):
    cpc = E.CPCPredictor(x_dim=5, y_dim=3)
    z, h = rand(7, 5), rand(7, 3)
    loss = float(cpc(z, h))
    g = ops.convert_to_numpy(cpc.predict_representation(z))
    ref_loss, ref_pos = np_cpc_loss(g, h)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(cpc.positive_scores(z, h), ref_pos, rtol=1e-5)
    assert float(cpc.lower_bound(z, h)) == pytest.approx(math.log(7) - loss, rel=1e-5)
    assert loss >= 0.0
    # cosine scores cap the bound at log N − log(1 + (N−1)e⁻²), whatever the inputs
    aligned = ops.convert_to_numpy(cpc.predict_representation(h @ np.zeros((3, 5), "float32") + z))
    assert float(cpc.lower_bound(z, aligned)) <= cpc.max_lower_bound(7) + 1e-5
    roundtrip(cpc, tmp_path, z, h)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        cpc(z, rand(7, 4))


def test_cpc_temperature_and_mask():
    cpc = E.CPCPredictor(x_dim=4, y_dim=4, hidden_dims=(6,), temperature=0.1)
    z, h = rand(6, 4), rand(6, 4)
    g = ops.convert_to_numpy(cpc.predict_representation(z))
    assert float(cpc(z, h)) == pytest.approx(np_cpc_loss(g, h, tau=0.1)[0], rel=1e-5)
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    sub = np_cpc_loss(g[mask], h[mask], tau=0.1)[0]
    assert float(cpc(z, h, sample_mask=mask)) == pytest.approx(sub, rel=1e-5)
    assert cpc.max_lower_bound(64) > E.CPCPredictor(x_dim=4, y_dim=4).max_lower_bound(64)


# ------------------------------------------------------------------------------------ StatisticNetwork


def test_statistic_network_table4_and_score_matrix(tmp_path):
    T = E.StatisticNetwork(input_dim=16)
    assert T.hidden_dims == [8, 16, 16, 4, 4]  # MDM App. Table 4: d/2, d, d, d/4, d/4
    z = rand(5, 16)
    out = ops.convert_to_numpy(T(z, training=True))
    assert out.shape == (5,) and np.all((out > 0) & (out < 1))  # sigmoid head
    x, y = rand(4, 10), rand(3, 6)
    S = ops.convert_to_numpy(T.score_matrix(x, y))
    assert S.shape == (4, 3)
    np.testing.assert_allclose(S[2, 1], ops.convert_to_numpy(T([x[2:3], y[1:2]]))[0], rtol=1e-5)
    roundtrip(T, tmp_path, z)
    with pytest.raises(ValueError, match="input_dim=16"):
        E.StatisticNetwork(input_dim=16)(rand(2, 15))
    with pytest.raises(ValueError, match="lipschitz"):
        E.StatisticNetwork(input_dim=4, lipschitz="clip")


def test_spectral_statistic_network_is_1_lipschitz():
    T = E.StatisticNetwork(
        input_dim=6, hidden_dims=[32, 32], dropout=0.0, output_activation=None, lipschitz="spectral"
    )
    z = 3.0 * rand(64, 6)
    for _ in range(30):  # power iterations converge during training-mode calls
        T(z, training=True)
    a, b = 3.0 * rand(500, 6), 3.0 * rand(500, 6)
    ta, tb = ops.convert_to_numpy(T(a)), ops.convert_to_numpy(T(b))
    ratio = np.abs(ta - tb) / np.linalg.norm(a - b, axis=1)
    assert ratio.max() <= 1.0 + 1e-3
    x_hat = E.interpolate_samples(a[:4], b[:4], seed=keras.random.SeedGenerator(0))
    u = (ops.convert_to_numpy(x_hat) - b[:4]) / (a[:4] - b[:4])
    np.testing.assert_allclose(u, u[:, :1] * np.ones((1, 6)), rtol=1e-3, atol=1e-3)  # one u per row


def test_separable_critic(tmp_path):
    f = E.SeparableCritic(embed_dim=4, hidden_dims=(8,))
    x, y = rand(5, 3), rand(5, 2)
    S = ops.convert_to_numpy(f.score_matrix(x, y))
    np.testing.assert_allclose(np.diag(S), f(x, y), rtol=1e-5, atol=1e-6)
    roundtrip(f, tmp_path, x, y)


# ---------------------------------------------------------------------------------- PolarityGMMEntropy


def np_class_entropy(y, jitter, form="full"):
    mu = y.mean(0)
    cov = (y - mu).T @ (y - mu) / len(y)  # biased, MMIM eq. 5
    k = y.shape[1]
    cov = cov + jitter * (np.trace(cov) / k + 1e-6) * np.eye(k)
    logdet = np.linalg.slogdet(cov)[1]
    return 0.5 * logdet if form == "paper" else 0.5 * (k * math.log(2 * math.pi * math.e) + logdet)


def test_gmm_entropy_matches_numpy_both_forms():
    y = rand(40, 3).astype("float64")
    labels = RNG.uniform(-3, 3, 40)
    for form in ("full", "paper"):
        gmm = E.PolarityGMMEntropy(dim=3, mem_size=0, batch_size=40, form=form)
        expected = 0.5 * (
            np_class_entropy(y[labels >= 0], 1e-3, form)
            + np_class_entropy(y[labels < 0], 1e-3, form)
        )
        assert float(gmm(y.astype("float32"), labels.astype("float32"))) == pytest.approx(
            expected, rel=1e-4
        )
    # a Gaussian sample: the single-class estimate approaches the closed form entropy
    big = RNG.multivariate_normal(
        np.zeros(3), [[2, 0.5, 0], [0.5, 1, 0], [0, 0, 0.5]], 20000
    ).astype("float32")
    gmm = E.PolarityGMMEntropy(dim=3, mem_size=0, batch_size=20000, jitter=0.0)
    true = E.gaussian_entropy(
        covariance=np.array([[2, 0.5, 0], [0.5, 1, 0], [0, 0, 0.5]], "float32")
    )
    assert float(gmm(big, np.ones(20000, "float32"))) == pytest.approx(float(true), abs=0.03)


def test_gmm_entropy_scale_equivariant():
    y, labels = rand(30, 4), RNG.uniform(-3, 3, 30).astype("float32")
    gmm = E.PolarityGMMEntropy(dim=4, mem_size=0, batch_size=30)
    assert float(gmm(10.0 * y, labels)) - float(gmm(y, labels)) == pytest.approx(
        4 * math.log(10.0), rel=1e-4
    )


def test_gmm_entropy_degenerate_classes_never_nan():
    gmm = E.PolarityGMMEntropy(dim=3, mem_size=0, batch_size=16)
    y = rand(16, 3)
    pos = np.abs(RNG.standard_normal(16)).astype("float32")
    # empty negative class: the positive class alone, weight 1
    only_pos = float(gmm(y, pos))
    assert only_pos == pytest.approx(np_class_entropy(y.astype("float64"), 1e-3), rel=1e-4)
    # one negative sample: dropped the same way
    one_neg = pos.copy()
    one_neg[0] = -1.0
    assert float(gmm(y, one_neg)) == pytest.approx(
        np_class_entropy(y[1:].astype("float64"), 1e-3), rel=1e-4
    )
    # fewer samples than dimensions (singular covariance): finite thanks to the jitter
    small = E.PolarityGMMEntropy(dim=8, mem_size=0, batch_size=4)
    assert math.isfinite(float(small(rand(4, 8), np.array([1, 1, -1, -1], "float32"))))
    # a single sample, and identical samples: no usable / zero covariance, still finite, zero or finite gradient
    for batch in (rand(1, 3), np.ones((5, 3), "float32")):
        v = tf.constant(batch)
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = gmm(v, np.ones(len(batch), "float32"))
        assert math.isfinite(float(out))
        assert np.all(np.isfinite(tape.gradient(out, v).numpy()))
    assert float(gmm(rand(1, 3), np.ones(1, "float32"))) == 0.0
    # NaN labels are invalid rows, not a third class
    lab = pos.copy()
    lab[:3] = np.nan
    assert float(gmm(y, lab)) == pytest.approx(
        np_class_entropy(y[3:].astype("float64"), 1e-3), rel=1e-4
    )


def test_gmm_memory_fifo_order_and_union():
    gmm = E.PolarityGMMEntropy(dim=2, mem_size=3, batch_size=4)
    batches = [np.full((4, 2), float(i), "float32") + rand(4, 2) for i in range(1, 5)]
    labels = [np.array([1, -1, 1, -1], "float32")] * 4
    for b, lab in zip(batches[:3], labels):
        gmm.update_memory(b, lab)
    np.testing.assert_allclose(gmm.memory.numpy(), np.stack(batches[:3]))
    gmm.update_memory(batches[3][:3], labels[3][:3])  # a short batch is padded and masked
    mem = gmm.memory.numpy()
    np.testing.assert_allclose(mem[:2], np.stack(batches[1:3]))  # oldest dropped, order kept
    np.testing.assert_allclose(mem[2, :3], batches[3][:3])
    np.testing.assert_array_equal(
        gmm.memory_valid.numpy(), [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
    )
    np.testing.assert_array_equal(gmm.memory_positive.numpy()[2], [1, 0, 1, 0])
    # call = entropy on memory ∪ current batch
    cur, cur_lab = rand(4, 2), np.array([1, 1, -1, -1], "float32")
    all_y = np.concatenate([batches[1], batches[2], batches[3][:3], cur]).astype("float64")
    all_l = np.concatenate([labels[1], labels[2], labels[3][:3], cur_lab])
    expected = 0.5 * (
        np_class_entropy(all_y[all_l >= 0], 1e-3) + np_class_entropy(all_y[all_l < 0], 1e-3)
    )
    assert float(gmm(cur, cur_lab)) == pytest.approx(expected, rel=1e-4)
    assert tuple(float(c) for c in gmm.class_counts(cur, cur_lab)) == (8.0, 7.0)
    gmm.reset_memory()
    assert gmm.memory_valid.numpy().sum() == 0


def test_gmm_gradients_reach_current_batch_only():
    gmm = E.PolarityGMMEntropy(dim=2, mem_size=1, batch_size=6)
    gmm.update_memory(rand(6, 2), np.array([1, -1] * 3, "float32"))
    assert gmm.trainable_variables == [] and len(gmm.non_trainable_variables) == 3
    y = tf.constant(rand(6, 2))
    with tf.GradientTape() as tape:
        tape.watch(y)
        tape.watch(gmm.memory.value)
        out = gmm(y, np.array([1, -1] * 3, "float32"))
    g_y, g_mem = tape.gradient(out, [y, gmm.memory.value])
    assert np.any(g_y.numpy() != 0)
    assert g_mem is None or not np.any(g_mem.numpy())


def test_gmm_input_errors():
    gmm = E.PolarityGMMEntropy(dim=3, mem_size=1, batch_size=4)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        gmm(rand(4, 2), np.ones(4, "float32"))
    with pytest.raises(ValueError, match="batch_size=4"):
        gmm.update_memory(rand(5, 3), np.ones(5, "float32"))
    with pytest.raises(ValueError, match="form"):
        E.PolarityGMMEntropy(dim=3, form="eq9")


def test_gmm_serialization_keeps_memory(tmp_path):
    gmm = E.PolarityGMMEntropy(dim=2, mem_size=2, batch_size=3, name="gmm")
    gmm.update_memory(rand(3, 2), np.array([1, -1, 1], "float32"))
    inputs = keras.Input((2,), batch_size=3), keras.Input((), batch_size=3)
    model = keras.Model(inputs, ops.reshape(gmm(*inputs), (1,)))
    path = tmp_path / "gmm.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("gmm")
    assert layer.get_config() == gmm.get_config()
    np.testing.assert_array_equal(layer.memory.numpy(), gmm.memory.numpy())
    np.testing.assert_array_equal(layer.memory_valid.numpy(), gmm.memory_valid.numpy())
    y, lab = rand(3, 2), np.array([-1, 1, -1], "float32")
    np.testing.assert_allclose(loaded([y, lab]), model([y, lab]), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ XLA


def test_every_estimator_layer_under_xla():
    q = E.GaussianConditional(y_dim=3, hidden_dim=4)
    club = E.CLUB(y_dim=3, hidden_dim=4, sample=True, seed=0)
    cpc = E.CPCPredictor(x_dim=5, y_dim=3)
    T = E.StatisticNetwork(input_dim=8, lipschitz="spectral", dropout=0.1)
    f = E.SeparableCritic(embed_dim=4, hidden_dims=(4,))
    gmm = E.PolarityGMMEntropy(dim=3, mem_size=2, batch_size=8)
    gen = keras.random.SeedGenerator(0)
    x, y, lab = rand(8, 5), rand(8, 3), RNG.uniform(-3, 3, 8).astype("float32")
    for layer in (q, cpc):
        layer(x) if layer is q else layer(x, y)
    club(x, y), T([x, y]), f(x, y)
    variables = q.trainable_variables + club.trainable_variables + cpc.trainable_variables
    variables += T.trainable_variables + f.trainable_variables

    def loss_fn(x, y, lab):
        (xp, yp), _ = E.sample_product_of_marginals([x, y], seed=gen)
        joint, marg = T([x, y], training=True), T([xp, yp], training=True)
        total = (
            -E.barber_agakov_lower_bound(log_likelihood=q.log_likelihood(x, y), entropy=gmm(y, lab))
            + club(x, y)
            + club.learning_loss(x, y)
            + cpc(x, y)
            - E.total_correlation_lower_bound(
                joint_scores=joint, marginal_scores=marg, measure="kl"
            )
            - E.infonce_lower_bound(scores=f.score_matrix(x, y))
        )
        return total

    @tf.function(jit_compile=True)
    def step(x, y, lab):
        with tf.GradientTape() as tape:
            total = loss_fn(x, y, lab)
        grads = tape.gradient(total, variables)
        gmm.update_memory(y, lab)
        return total, grads

    total, grads = step(x, y, lab)
    assert math.isfinite(float(total))
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    step(x, y, lab)
    assert gmm.memory_valid.numpy().sum() == 16
