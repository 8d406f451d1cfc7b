"""Regression tests of the estimator defects of issue 10, item 7: each one failed before its fix.

1. CLUB's positive term lost nats in float32 (expanded quadratic form);
2. CPC's normalisation direction (paper: over h for each prediction; official code: over predictions);
3. `sample_product_of_marginals` on an inputs dict separated keys of one modality;
4. the polarity-GMM entropy under a mixed-precision policy;
5. `StatisticNetwork(lipschitz="gradient_penalty")` and MINE's moving average as layer state.
"""

import math

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf
from keras import ops

from keras_mmsa import estimators as E

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


# ------------------------------------------------------------------------ 1. CLUB positive-term precision


def np_log_likelihood_matrix(y, mean, logvar):
    """float64 reference: L[i, j] = log N(y_j; μ_i, diag exp(logvar_i))."""
    y, mean, logvar = (np.asarray(a, np.float64) for a in (y, mean, logvar))
    quad = np.sum(np.square(y[None] - mean[:, None]) * np.exp(-logvar[:, None]), axis=-1)
    return (
        -0.5 * quad - 0.5 * np.sum(logvar, -1)[:, None] - 0.5 * y.shape[-1] * math.log(2 * math.pi)
    )


def fitted_q(scale, batch=32, dim=16):
    """A q that fits: μ_i within 0.01 of y_i, log σ² = −10, features of scale `scale`."""
    y = rand(batch, dim, scale=scale)
    mean = (y + 0.01 * rand(batch, dim)).astype("float32")
    logvar = np.full((batch, dim), -10.0, "float32")
    return y, mean, logvar


@pytest.mark.parametrize("scale", [5.0, 10.0])
@pytest.mark.parametrize("pairs", [None, "expanded"])
def test_log_likelihood_matrix_is_exact_where_q_fits(scale, pairs):
    # Before the fix (x² − 2xμ + μ² in float32) the diagonal was off by up to 1.3 nats at scale 5 and
    # 6.3 nats at scale 10 against the float64 reference; now the diagonal is a difference form.
    y, mean, logvar = fitted_q(scale)
    ref = np_log_likelihood_matrix(y, mean, logvar)
    kwargs = {} if pairs is None else {"pairs": pairs}
    got = ops.convert_to_numpy(
        E.gaussian_log_likelihood_matrix(y=y, mean=mean, logvar=logvar, **kwargs)
    )
    diag_err = np.max(np.abs(np.diag(got) - np.diag(ref)))
    assert diag_err < 1e-3, f"diagonal error {diag_err:.3g} nats"
    # the off-diagonal (|L| ~ 1e7 here) to float32 relative precision
    np.testing.assert_allclose(got, ref, rtol=2e-5)
    # the CLUB positive term, which is what the bound's encoders are trained on
    club = float(E.club_upper_bound(log_likelihood_matrix=got))
    club_ref = np.mean(np.diag(ref)) - np.mean(ref)
    assert club == pytest.approx(club_ref, rel=2e-5)


def test_log_likelihood_matrix_broadcast_form_is_exact_everywhere():
    # a near-duplicate off-diagonal pair (y_1 ≈ μ_0) is exact too in the broadcast form
    y, mean, logvar = fitted_q(10.0, batch=4, dim=8)
    y[1] = mean[0] + 0.01
    ref = np_log_likelihood_matrix(y, mean, logvar)
    got = ops.convert_to_numpy(
        E.gaussian_log_likelihood_matrix(y=y, mean=mean, logvar=logvar, pairs="broadcast")
    )
    assert abs(got[0, 1] - ref[0, 1]) < 1e-3
    np.testing.assert_allclose(got, ref, rtol=2e-5)
    # a non-square matrix (more samples than conditionals) in both forms; the expanded form keeps its
    # exact diagonal but not the near-duplicate off-diagonal pair (documented)
    for pairs in ("broadcast", "expanded"):
        got = ops.convert_to_numpy(
            E.gaussian_log_likelihood_matrix(y=y, mean=mean[:3], logvar=logvar[:3], pairs=pairs)
        )
        keep = np.ones((3, 4), bool)
        keep[0, 1] = pairs == "broadcast"
        np.testing.assert_allclose(got[keep], ref[:3][keep], rtol=2e-5)
        assert abs(got[0, 0] - ref[0, 0]) < 1e-3 and abs(got[2, 2] - ref[2, 2]) < 1e-3
    with pytest.raises(ValueError, match="pairs"):
        E.gaussian_log_likelihood_matrix(y=y, mean=mean, logvar=logvar, pairs="nope")


def test_log_likelihood_matrix_exact_diagonal_under_xla():
    y, mean, logvar = fitted_q(10.0)
    ref = np_log_likelihood_matrix(y, mean, logvar)
    fn = tf.function(
        lambda y, m, lv: E.gaussian_log_likelihood_matrix(y=y, mean=m, logvar=lv, pairs="expanded"),
        jit_compile=True,
    )
    got = ops.convert_to_numpy(fn(y, mean, logvar))
    assert np.max(np.abs(np.diag(got) - np.diag(ref))) < 1e-3


# ------------------------------------------------------------------------- 2. CPC normalisation direction


def identity_cpc(dim, **kwargs):
    cpc = E.CPCPredictor(x_dim=dim, y_dim=dim, **kwargs)
    cpc.build((None, dim), (None, dim))
    cpc.predictor_layers[-1].set_weights([np.eye(dim, dtype="float32"), np.zeros(dim, "float32")])
    return cpc


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cpc_normalisation_directions(tmp_path):
    z, h = rand(5, 3), rand(5, 3)
    s = unit(z.astype(np.float64)) @ unit(h.astype(np.float64)).T  # S[i, j] = Ḡ(Z_i) · h̄_j
    over_h = -np.mean(np.diag(s) - scipy.special.logsumexp(s, axis=1))  # MMIM eq. 11
    over_prediction = -np.mean(np.diag(s) - scipy.special.logsumexp(s, axis=0))
    assert abs(over_h - over_prediction) > 1e-3  # the two are different quantities
    paper = identity_cpc(3)
    assert paper.normalize_over == "h"
    official = identity_cpc(3, normalize_over="prediction")
    assert float(paper(z, h)) == pytest.approx(over_h, rel=1e-5)
    assert float(official(z, h)) == pytest.approx(over_prediction, rel=1e-5)
    assert float(official.lower_bound(z, h)) == pytest.approx(
        math.log(5) - over_prediction, rel=1e-5
    )
    # same score matrix, same positives: only the normaliser differs
    np.testing.assert_allclose(paper.score_matrix(z, h), official.score_matrix(z, h), rtol=1e-6)
    # with a mask: the valid sub-matrix, normalised over its columns
    mask = np.array([1, 1, 0, 1, 1], bool)
    sub = s[np.ix_(mask, mask)]
    ref = -np.mean(np.diag(sub) - scipy.special.logsumexp(sub, axis=0))
    assert float(official(z, h, sample_mask=mask)) == pytest.approx(ref, rel=1e-5)
    config = official.get_config()
    assert config["normalize_over"] == "prediction"
    assert E.CPCPredictor.from_config(config).normalize_over == "prediction"
    with pytest.raises(ValueError, match="normalize_over"):
        E.CPCPredictor(x_dim=3, y_dim=3, normalize_over="z")


# ------------------------------------------------------------------- 3. product of marginals on inputs


def inputs_dict(n=16, length=6, frames=5):
    """Every tensor encodes its row index, so alignment within a modality can be read off."""
    idx = np.arange(n)
    return {
        "token_ids": np.repeat(idx[:, None], length, 1).astype("int32") + 100,
        "padding_mask": np.arange(length)[None] <= (idx[:, None] % length),
        "segment_ids": np.repeat(idx[:, None], length, 1).astype("int32"),
        "audio": np.repeat(idx[:, None, None], frames, 1).astype("float32")
        * np.ones((1, 1, 3), "float32"),
        "audio_lengths": (idx % frames + 1).astype("int32"),
        "vision": np.repeat(idx[:, None, None], frames, 1).astype("float32")
        * np.ones((1, 1, 2), "float32"),
        "vision_lengths": ((idx * 7) % frames + 1).astype("int32"),
    }


def test_product_of_marginals_keeps_modality_groups_aligned():
    n, length, frames = 16, 6, 5
    x = inputs_dict(n, length, frames)
    out, _ = E.sample_product_of_marginals(x, seed=keras.random.SeedGenerator(3))
    out = {k: ops.convert_to_numpy(v) for k, v in out.items()}
    text = out["token_ids"][:, 0] - 100
    audio = out["audio"][:, 0, 0].astype(int)
    vision = out["vision"][:, 0, 0].astype(int)
    for perm in (text, audio, vision):
        assert sorted(perm) == list(range(n))
    # within a group the rows stay aligned (before the fix every key had its own permutation)
    np.testing.assert_array_equal(out["segment_ids"][:, 0], text)
    np.testing.assert_array_equal(out["padding_mask"], x["padding_mask"][text])
    np.testing.assert_array_equal(out["audio_lengths"], x["audio_lengths"][audio])
    np.testing.assert_array_equal(out["vision_lengths"], x["vision_lengths"][vision])
    # and the groups get different permutations
    assert not np.array_equal(text, audio) and not np.array_equal(audio, vision)
    assert not np.array_equal(text, vision)


def test_product_of_marginals_explicit_groups_other_keys_and_mask():
    n = 16
    x = inputs_dict(n)
    x["example_index"] = np.arange(n, dtype="int32")  # not a modality key: its own group
    mask = np.arange(n) % 3 != 0
    out, m = E.sample_product_of_marginals(x, seed=keras.random.SeedGenerator(5), mask=mask)
    text = ops.convert_to_numpy(out["segment_ids"])[:, 0]
    audio = ops.convert_to_numpy(out["audio_lengths"])
    index = ops.convert_to_numpy(out["example_index"])
    assert sorted(index) == list(range(n)) and not np.array_equal(index, text)
    audio_rows = ops.convert_to_numpy(out["audio"])[:, 0, 0].astype(int)
    vision_rows = ops.convert_to_numpy(out["vision"])[:, 0, 0].astype(int)
    np.testing.assert_array_equal(audio, x["audio_lengths"][audio_rows])
    np.testing.assert_array_equal(
        m, mask[text] & mask[audio_rows] & mask[vision_rows] & mask[index]
    )
    # explicit groups: a and b move together, c alone
    a = np.arange(n, dtype="float32")[:, None]
    d = {"a": a, "b": a + 0.5, "c": a}
    out, _ = E.sample_product_of_marginals(
        d, seed=keras.random.SeedGenerator(0), groups=[("a", "b"), ("c",)]
    )
    pa, pb, pc = (ops.convert_to_numpy(out[k])[:, 0] for k in "abc")
    np.testing.assert_array_equal(pb, pa + 0.5)
    assert not np.array_equal(pa, pc)
    # keep_first leaves the first group (all of its keys) in place
    out, _ = E.sample_product_of_marginals(d, seed=1, groups=[("a", "b"), ("c",)], keep_first=True)
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], a + 0.5)
    # a list with index groups
    (la, lb, lc), _ = E.sample_product_of_marginals([a, a + 0.5, a], seed=2, groups=[(0, 1), (2,)])
    np.testing.assert_array_equal(ops.convert_to_numpy(lb), ops.convert_to_numpy(la) + 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        E.sample_product_of_marginals(d, seed=0, groups=[("a", "b", "c")])
    with pytest.raises(ValueError, match="more than one group"):
        E.sample_product_of_marginals(d, seed=0, groups=[("a", "b"), ("b", "c")])
    with pytest.raises(ValueError, match="unknown"):
        E.sample_product_of_marginals(d, seed=0, groups=[("a", "z"), ("c",)])


# ----------------------------------------------------------------- 4. GMM entropy under mixed precision


@pytest.fixture
def restore_policy():
    policy = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(policy)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_gmm_entropy_runs_in_float32_under_mixed_precision(policy, restore_policy):
    y, labels = rand(12, 4, scale=30.0) + 100.0, np.linspace(-2, 2, 12).astype("float32")
    reference = E.PolarityGMMEntropy(dim=4, mem_size=1, batch_size=12)
    reference.update_memory(y + 1.0, labels)
    expected = float(reference(y, labels))
    keras.mixed_precision.set_global_policy(policy)
    gmm = E.PolarityGMMEntropy(dim=4, mem_size=1, batch_size=12)
    assert gmm.memory.dtype == "float32"
    assert gmm.memory_positive.dtype == "float32" and gmm.memory_valid.dtype == "float32"
    gmm.update_memory(y + 1.0, labels)
    # stored at full precision
    np.testing.assert_array_equal(ops.convert_to_numpy(gmm.memory)[0], y + 1.0)
    out = gmm(y, labels)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert float(out) == pytest.approx(expected, rel=1e-5)
    # half-precision inputs (what a mixed-precision model hands it) are computed in float32 too
    half = ops.cast(y, keras.mixed_precision.global_policy().compute_dtype)
    out = gmm(half, labels)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.isfinite(float(out))
    # and gradients reach the (half-precision) representation
    h = tf.Variable(ops.convert_to_numpy(half))
    with tf.GradientTape() as tape:
        value = gmm(h, labels)
    grad = tape.gradient(value, h)
    assert grad is not None and np.all(np.isfinite(ops.convert_to_numpy(ops.cast(grad, "float32"))))


# ----------------------------------------------------------------------- 5a. gradient penalty (WGAN-GP)


def linear_critic(weight, **kwargs):
    T = E.StatisticNetwork(
        input_dim=len(weight),
        hidden_dims=[],
        dropout=0.0,
        output_activation=None,
        lipschitz="gradient_penalty",
        **kwargs,
    )
    T.build((None, len(weight)))
    T.output_layer.set_weights([np.asarray(weight, "float32")[:, None], np.zeros(1, "float32")])
    return T


def test_input_gradients_helper():
    x = rand(4, 3)
    out, grads = E.input_gradients(lambda v: ops.sum(v**3, axis=-1), x)
    np.testing.assert_allclose(out, np.sum(x**3, -1), rtol=1e-5)
    np.testing.assert_allclose(grads, 3 * x**2, rtol=1e-5)


@pytest.mark.parametrize("c", [1.0, 0.5, 3.0])
def test_gradient_penalty_of_linear_critic_is_closed_form(c):
    w = rand(6)
    T = linear_critic(c * w / np.linalg.norm(w))
    joint, marginal = rand(16, 6), rand(16, 6)
    gp = float(T.gradient_penalty(joint, marginal))
    assert gp == pytest.approx((c - 1.0) ** 2, abs=1e-5)
    # the one-sided variant penalises only norms above 1
    one_sided = float(T.gradient_penalty(joint, marginal, one_sided=True))
    assert one_sided == pytest.approx(max(c - 1.0, 0.0) ** 2, abs=1e-5)
    # lipschitz_penalty = weight · penalty when lipschitz="gradient_penalty", 0 otherwise
    assert float(T.lipschitz_penalty(joint, marginal)) == pytest.approx(
        10.0 * (c - 1.0) ** 2, abs=1e-4
    )
    plain = E.StatisticNetwork(input_dim=6, hidden_dims=[], dropout=0.0, output_activation=None)
    assert float(plain.lipschitz_penalty(joint, marginal)) == 0.0


def test_gradient_penalty_trains_the_critic_weights():
    c = 3.0
    w = rand(6)
    T = linear_critic(c * w / np.linalg.norm(w))
    joint, marginal = rand(16, 6), rand(16, 6)
    with tf.GradientTape() as tape:
        gp = T.gradient_penalty(joint, marginal)
    kernel = T.output_layer.kernel
    grad = ops.convert_to_numpy(tape.gradient(gp, kernel))
    # d/dw (‖w‖ − 1)² = 2(‖w‖ − 1) w / ‖w‖
    k = ops.convert_to_numpy(kernel)
    np.testing.assert_allclose(grad, 2 * (c - 1) * k / np.linalg.norm(k), rtol=1e-4, atol=1e-6)
    # a nonlinear critic on a list input (T([x, y])), inside a compiled function
    mlp = E.StatisticNetwork(
        input_dim=6,
        hidden_dims=[8],
        dropout=0.0,
        output_activation=None,
        lipschitz="gradient_penalty",
        gradient_penalty_weight=2.0,
        seed=1,
    )
    mlp.build((None, 6))

    @tf.function(jit_compile=True)
    def step(x, y, y_marginal):
        with tf.GradientTape() as tape:
            penalty = mlp.lipschitz_penalty([x, y], [x, y_marginal])
        # ∇_x T does not depend on the output bias (no gradient there); the kernels must get one
        return penalty, tape.gradient(
            penalty, [mlp.dense_layers[0].kernel, mlp.output_layer.kernel]
        )

    penalty, grads = step(rand(8, 2), rand(8, 4), rand(8, 4))
    assert float(penalty) > 0.0
    assert all(g is not None and np.all(np.isfinite(ops.convert_to_numpy(g))) for g in grads)
    assert all(np.any(ops.convert_to_numpy(g) != 0) for g in grads)
    config = mlp.get_config()
    assert config["gradient_penalty_weight"] == 2.0 and config["one_sided_penalty"] is False
    assert config["seed"] == 1
    assert E.StatisticNetwork.from_config(config).gradient_penalty_weight == 2.0


# ------------------------------------------------------------------ 5b. MINE's moving average as state


def lme(x):
    return scipy.special.logsumexp(x) - math.log(x.size)


def test_mine_moving_average_is_layer_state():
    decay = 0.9
    mine = E.MINEMovingAverage(decay=decay)
    joint, marginal = rand(8), rand(8)
    # loss reads the state only: computing it twice changes nothing
    before = [ops.convert_to_numpy(w) for w in mine.get_weights()]
    value = float(mine(joint, marginal))
    value_again = float(mine(joint, marginal))
    assert value == value_again == pytest.approx(np.mean(joint) - lme(marginal), rel=1e-5)
    for b, a in zip(before, mine.get_weights()):
        np.testing.assert_array_equal(b, a)
    assert mine.log_moving_average.trainable is False
    # first update initialises the EMA with the batch value, later ones are an EMA (closed form)
    mine.update_state(marginal_scores=marginal)
    assert float(mine.log_moving_average) == pytest.approx(lme(marginal), rel=1e-5)
    second = rand(8) + 1.0
    mine.update_state(marginal_scores=second)
    ema = decay * np.exp(lme(marginal)) + (1 - decay) * np.exp(lme(second))
    assert float(mine.log_moving_average) == pytest.approx(math.log(ema), rel=1e-5)
    # the gradient is MINE's bias-corrected one: ∂/∂m_k = −e^{m_k} / (n · EMA'), with EMA' including the batch
    m = tf.Variable(marginal)
    with tf.GradientTape() as tape:
        bound = mine(joint_scores=joint, marginal_scores=m)
    ema_next = decay * ema + (1 - decay) * np.exp(lme(marginal))
    np.testing.assert_allclose(
        tape.gradient(bound, m), -np.exp(marginal) / (8 * ema_next), rtol=1e-4
    )
    # a score matrix: its diagonal is the joint, the off-diagonal the marginal
    s = rand(4, 4)
    off = s[~np.eye(4, dtype=bool)]
    assert float(mine.lower_bound(scores=s)) == pytest.approx(
        np.mean(np.diag(s)) - lme(off), rel=1e-5
    )
    # the state survives get_weights / set_weights (and hence checkpoints)
    copy = E.MINEMovingAverage.from_config(mine.get_config())
    copy.set_weights(mine.get_weights())
    assert float(copy.log_moving_average) == pytest.approx(math.log(ema), rel=1e-6)
    with tf.GradientTape() as tape:
        bound = copy(joint_scores=joint, marginal_scores=m)
    np.testing.assert_allclose(
        tape.gradient(bound, m), -np.exp(marginal) / (8 * ema_next), rtol=1e-4
    )
    mine.reset_state()
    assert float(mine.initialized) == 0.0
    with pytest.raises(ValueError, match="decay"):
        E.MINEMovingAverage(decay=1.0)


def test_mine_moving_average_in_compiled_stages():
    mine = E.MINEMovingAverage(decay=0.5)
    marginal = rand(6)

    @tf.function(jit_compile=True)
    def stage(joint, marginal):
        return -mine(joint, marginal)

    @tf.function(jit_compile=True)
    def after_stage(marginal):
        mine.update_state(marginal_scores=marginal)

    stage(rand(6), marginal)
    assert float(mine.initialized) == 0.0
    after_stage(marginal)
    after_stage(marginal + 2.0)
    ema = 0.5 * np.exp(lme(marginal)) + 0.5 * np.exp(lme(marginal + 2.0))
    assert float(mine.log_moving_average) == pytest.approx(math.log(ema), rel=1e-5)
