"""The MI bounds and Gaussian closed forms against numpy/scipy references on fixed tensors."""

import math

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
from keras import ops

from keras_mmsa import estimators as E

RNG = np.random.default_rng(0)


def np_lme(x):
    x = np.asarray(x, np.float64).ravel()
    return scipy.special.logsumexp(x) - math.log(x.size)


def off_diag(s):
    return s[~np.eye(s.shape[0], dtype=bool)]


def scores_and_mask(n=6, scale=2.0):
    s = (RNG.standard_normal((n, n)) * scale).astype("float32")
    mask = np.ones(n, bool)
    mask[[1, 4]] = False
    return s, mask


# ----------------------------------------------------------------------------------------- helpers


def test_log_mean_exp_matches_numpy_and_is_stable():
    x = RNG.standard_normal((5, 7)).astype("float32") * 3
    np.testing.assert_allclose(E.log_mean_exp(x), np_lme(x), rtol=1e-5)
    np.testing.assert_allclose(
        E.log_mean_exp(x, axis=1), [np_lme(r) for r in x], rtol=1e-5, atol=1e-6
    )
    big = np.array([1000.0, 1000.0, -1000.0], "float32")
    np.testing.assert_allclose(E.log_mean_exp(big), 1000.0 + math.log(2 / 3), rtol=1e-6)
    mask = np.array([True, False, True])
    np.testing.assert_allclose(E.log_mean_exp(big, mask=mask), np_lme([1000.0, -1000.0]), rtol=1e-6)


def test_empty_masks_give_zero_with_finite_gradients():
    x = tf.constant(np.array([np.inf, 3.0, -2.0], "float32"))
    none = np.zeros(3, bool)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = E.log_mean_exp(x, mask=none) + E.masked_mean(x, mask=none)
    assert float(out) == 0.0
    assert np.all(np.isfinite(tape.gradient(out, x).numpy()))
    # masked-out infinities do not leak into a partially valid mask either
    np.testing.assert_allclose(
        E.log_mean_exp(x, mask=[False, True, True]), np_lme([3.0, -2.0]), rtol=1e-6
    )


def test_split_score_matrix():
    s, mask = scores_and_mask()
    joint, jm, marg, mm = E.split_score_matrix(scores=s, mask=mask)
    np.testing.assert_array_equal(joint, np.diag(s))
    expected = np.outer(mask, mask) & ~np.eye(6, dtype=bool)
    np.testing.assert_array_equal(mm, expected)


# -------------------------------------------------------------------------------------------- bounds


def np_infonce(s):
    s = np.asarray(s, np.float64)
    return np.mean(np.diag(s) - scipy.special.logsumexp(s, axis=1)) + math.log(s.shape[0])


def test_infonce_matches_numpy_mask_and_ceiling():
    s, mask = scores_and_mask()
    np.testing.assert_allclose(E.infonce_lower_bound(scores=s), np_infonce(s), rtol=1e-5)
    sub = s[np.ix_(mask, mask)]
    np.testing.assert_allclose(
        E.infonce_lower_bound(scores=s, mask=mask), np_infonce(sub), rtol=1e-5
    )
    # the ceiling log K holds for any scores, even absurdly confident ones
    for scale in (1.0, 10.0, 1e4):
        big = (np.eye(8) * scale + RNG.standard_normal((8, 8))).astype("float32")
        assert float(E.infonce_lower_bound(scores=big)) <= math.log(8) + 1e-6


@pytest.mark.parametrize(
    "fn, ref",
    [
        (E.donsker_varadhan_lower_bound, lambda j, m: np.mean(j) - np_lme(m)),
        (
            E.nwj_lower_bound,
            lambda j, m: np.mean(j) - np.mean(np.exp(np.asarray(m, np.float64) - 1)),
        ),
        (
            E.js_fgan_lower_bound,
            lambda j, m: (
                np.mean(-np.logaddexp(0, -np.asarray(j, np.float64)))
                - np.mean(np.logaddexp(0, np.asarray(m, np.float64)))
            ),
        ),
        (
            E.js_lower_bound,
            lambda j, m: np.mean(np.asarray(j) + 1) - np.mean(np.exp(np.asarray(m, np.float64))),
        ),
        (E.wasserstein_dependency, lambda j, m: np.mean(j) - np.mean(m)),
    ],
)
def test_sample_bounds_match_numpy(fn, ref):
    s, mask = scores_and_mask()
    # score-matrix form: diagonal = joint, off-diagonal = marginal
    np.testing.assert_allclose(fn(scores=s), ref(np.diag(s), off_diag(s)), rtol=1e-5, atol=1e-6)
    sub = s[np.ix_(mask, mask)]
    np.testing.assert_allclose(
        fn(scores=s, mask=mask), ref(np.diag(sub), off_diag(sub)), rtol=1e-5, atol=1e-6
    )
    # flat form (e.g. T on a batch and on a permuted batch) with masks
    j, m = RNG.standard_normal(10).astype("float32"), RNG.standard_normal(12).astype("float32")
    jm, mm = RNG.random(10) > 0.3, RNG.random(12) > 0.3
    np.testing.assert_allclose(
        fn(joint_scores=j, marginal_scores=m), ref(j, m), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        fn(joint_scores=j, marginal_scores=m, joint_mask=jm, marginal_mask=mm),
        ref(j[jm], m[mm]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_wasserstein_paper_log_form():
    j, m = np.array([0.5, 0.7], "float32"), np.array([0.2, 0.4], "float32")
    np.testing.assert_allclose(
        E.wasserstein_dependency(joint_scores=j, marginal_scores=m, log_marginal=True),
        0.6 - math.log(0.3),
        rtol=1e-6,
    )


def test_bounds_reject_ambiguous_inputs():
    s = np.zeros((3, 3), "float32")
    with pytest.raises(ValueError, match="not both"):
        E.nwj_lower_bound(scores=s, joint_scores=np.zeros(3))
    with pytest.raises(ValueError, match="both"):
        E.donsker_varadhan_lower_bound(joint_scores=np.zeros(3))
    with pytest.raises(ValueError, match=r"\[B, B\]"):
        E.nwj_lower_bound(scores=np.zeros(3))
    with pytest.raises(ValueError, match=r"\[B, B\]"):
        E.club_upper_bound(log_likelihood_matrix=np.zeros(3))


def test_mine_moving_average_keeps_value_and_corrects_gradient():
    s = tf.constant(RNG.standard_normal((5, 5)).astype("float32"))
    log_ma = tf.constant(0.7)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(s)
        plain = E.donsker_varadhan_lower_bound(scores=s)
        corrected = E.donsker_varadhan_lower_bound(scores=s, log_moving_average=log_ma)
    np.testing.assert_allclose(plain, corrected, rtol=1e-6)
    g = tape.gradient(corrected, s).numpy()
    sv = s.numpy().astype(np.float64)
    off = ~np.eye(5, dtype=bool)
    # d/ds_ij of −(mean e^T)/EMA on marginal pairs = −e^{s_ij} / (n_marg · EMA); diagonal: +1/5
    expected = np.where(off, -np.exp(sv) / (off.sum() * math.exp(0.7)), 0.0) + np.eye(5) / 5
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-7)
    new = E.update_log_moving_average(
        log_moving_average=0.7, marginal_scores=off_diag(sv), decay=0.9
    )
    np.testing.assert_allclose(
        new, math.log(0.9 * math.exp(0.7) + 0.1 * np.mean(np.exp(off_diag(sv)))), rtol=1e-5
    )


def test_js_lower_bound_has_js_gradient():
    s = tf.constant(RNG.standard_normal((4, 4)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(s)
        mixed = E.js_lower_bound(scores=s)
        js = E.js_fgan_lower_bound(scores=s)
    np.testing.assert_allclose(tape.gradient(mixed, s), tape.gradient(js, s), rtol=1e-6)


def test_barber_agakov_and_club_match_numpy():
    ll = RNG.standard_normal(6).astype("float32")
    mask = np.array([1, 1, 0, 1, 0, 1], bool)
    np.testing.assert_allclose(
        E.barber_agakov_lower_bound(log_likelihood=ll, entropy=2.5, mask=mask),
        ll[mask].mean() + 2.5,
        rtol=1e-6,
    )
    L = RNG.standard_normal((6, 6)).astype("float32")
    np.testing.assert_allclose(
        E.club_upper_bound(log_likelihood_matrix=L), np.diag(L).mean() - L.mean(), rtol=1e-5
    )
    sub = L[np.ix_(mask, mask)]
    np.testing.assert_allclose(
        E.club_upper_bound(log_likelihood_matrix=L, mask=mask),
        np.diag(sub).mean() - sub.mean(),
        rtol=1e-5,
    )
    neg = RNG.standard_normal(6).astype("float32")
    np.testing.assert_allclose(
        E.club_sample_upper_bound(log_likelihood=ll, shuffled_log_likelihood=neg, mask=mask),
        (ll - neg)[mask].mean(),
        rtol=1e-5,
    )


def test_gradient_penalty_matches_numpy():
    g = RNG.standard_normal((4, 3, 2)).astype("float32")
    norms = np.linalg.norm(g.reshape(4, -1), axis=1)
    np.testing.assert_allclose(
        E.gradient_penalty(gradients=g), np.mean((norms - 1) ** 2), rtol=1e-5
    )
    np.testing.assert_allclose(
        E.gradient_penalty(gradients=g, one_sided=True),
        np.mean(np.maximum(norms - 1, 0) ** 2),
        rtol=1e-5,
    )


def test_total_correlation_dispatch():
    j, m = RNG.standard_normal(8).astype("float32"), RNG.standard_normal(8).astype("float32")
    for measure, fn in (
        ("kl", E.donsker_varadhan_lower_bound),
        ("f", E.nwj_lower_bound),
        ("js", E.js_lower_bound),
        ("w", E.wasserstein_dependency),
    ):
        np.testing.assert_allclose(
            E.total_correlation_lower_bound(joint_scores=j, marginal_scores=m, measure=measure),
            fn(joint_scores=j, marginal_scores=m),
        )
    with pytest.raises(ValueError, match="Unknown dependency measure"):
        E.total_correlation_lower_bound(joint_scores=j, marginal_scores=m, measure="tv")


# ------------------------------------------------------------------------------------ Gaussian forms


def test_gaussian_log_likelihood_matches_scipy():
    y, mu = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 3))
    logvar = RNG.uniform(-2, 2, (5, 3))
    ref = scipy.stats.norm.logpdf(y, mu, np.exp(0.5 * logvar)).sum(-1)
    args = dict(y=y.astype("float32"), mean=mu.astype("float32"), logvar=logvar.astype("float32"))
    np.testing.assert_allclose(E.gaussian_log_likelihood(**args), ref, rtol=1e-5)
    free = -((y - mu) ** 2 / (2 * np.exp(logvar))).sum(-1)
    np.testing.assert_allclose(
        E.gaussian_log_likelihood(**args, variance_free=True), free, rtol=1e-5
    )
    # all-pairs matrix: L[i, j] = log N(y_j; mu_i, var_i)
    mat = E.gaussian_log_likelihood_matrix(
        y=args["y"][:4], mean=args["mean"], logvar=args["logvar"]
    )
    ref_mat = scipy.stats.norm.logpdf(y[None, :4], mu[:, None], np.exp(0.5 * logvar)[:, None]).sum(
        -1
    )
    np.testing.assert_allclose(mat, ref_mat, rtol=1e-4, atol=1e-4)


def test_cholesky_log_det_and_entropy_match_numpy_scipy():
    a = RNG.standard_normal((6, 6))
    cov = a @ a.T + 0.1 * np.eye(6)
    np.testing.assert_allclose(
        E.cholesky_log_det(matrix=cov.astype("float32")), np.linalg.slogdet(cov)[1], rtol=1e-4
    )
    np.testing.assert_allclose(
        E.cholesky_log_det(matrix=cov.astype("float32"), jitter=0.5),
        np.linalg.slogdet(cov + 0.5 * np.eye(6))[1],
        rtol=1e-4,
    )
    ent = scipy.stats.multivariate_normal(mean=np.zeros(6), cov=cov).entropy()
    np.testing.assert_allclose(E.gaussian_entropy(covariance=cov.astype("float32")), ent, rtol=1e-4)
    np.testing.assert_allclose(
        E.gaussian_entropy(covariance=cov.astype("float32"), constant_free=True),
        0.5 * np.linalg.slogdet(cov)[1],
        rtol=1e-4,
    )
    # batched
    covs = np.stack([cov, 2 * cov]).astype("float32")
    np.testing.assert_allclose(
        E.cholesky_log_det(matrix=covs), [np.linalg.slogdet(c)[1] for c in covs], rtol=1e-4
    )


def test_correlated_gaussian_closed_forms():
    for mi, rho in zip((2, 4, 6, 8, 10), (0.4258, 0.5742, 0.6717, 0.7421, 0.7951)):
        assert E.mi_to_rho(mi=mi, dim=20) == pytest.approx(rho, abs=1e-4)
        assert E.correlated_gaussian_mi(rho=E.mi_to_rho(mi=mi, dim=20), dim=20) == pytest.approx(mi)
    # I(x; y) of a 1-d correlated Gaussian from its joint covariance: H(x) + H(y) − H(x, y)
    rho = 0.6
    joint = scipy.stats.multivariate_normal(cov=[[1, rho], [rho, 1]]).entropy()
    assert E.correlated_gaussian_mi(rho=rho, dim=1) == pytest.approx(
        2 * scipy.stats.norm.entropy() - joint
    )


# -------------------------------------------------------------------------------- permutations


def test_permutations_are_seeded_permutations():
    gen = keras.random.SeedGenerator(3)
    p1, p2 = E.random_permutation(50, seed=gen).numpy(), E.random_permutation(50, seed=gen).numpy()
    assert sorted(p1) == list(range(50)) and sorted(p2) == list(range(50))
    assert not np.array_equal(p1, p2)
    np.testing.assert_array_equal(
        E.random_permutation(50, seed=keras.random.SeedGenerator(3)), p1
    )  # same seed, same draw
    for s in range(20):
        d = E.derangement(7, seed=keras.random.SeedGenerator(s)).numpy()
        assert sorted(d) == list(range(7)) and not np.any(d == np.arange(7))


def test_sample_product_of_marginals():
    n = 32
    a = np.arange(n, dtype="float32")[:, None] * np.ones((1, 2), "float32")
    v = np.arange(n, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    t = np.arange(n, dtype="float32")[:, None]
    mask = np.arange(n) % 4 != 0
    (pa, pv, pt), m = E.sample_product_of_marginals(
        (a, v, t), seed=keras.random.SeedGenerator(0), mask=mask
    )
    ia, iv, it = (ops.convert_to_numpy(x)[:, 0].astype(int) for x in (pa, pv, pt))
    for idx in (ia, iv, it):
        assert sorted(idx) == list(range(n))
    assert not np.array_equal(ia, iv) and not np.array_equal(iv, it)  # independent permutations
    np.testing.assert_array_equal(m, mask[ia] & mask[iv] & mask[it])
    d, dm = E.sample_product_of_marginals({"a": a, "v": v}, seed=1, keep_first=True)
    assert set(d) == {"a", "v"} and dm is None
    np.testing.assert_array_equal(d["a"], a)
    with pytest.raises(ValueError, match="at least 2"):
        E.sample_product_of_marginals([a], seed=0)
