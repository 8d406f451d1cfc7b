"""Variational bounds on mutual information, as keyword-only pure functions over score tensors.

Conventions (after Poole et al., 2019, "On variational bounds of mutual information"):

* A **score matrix** `scores[i, j] = f(x_i, y_j)` has the joint pairs (x_i, y_i) on its diagonal and pairs from
  the product of marginals p(x)p(y) off the diagonal.
* Bounds that only need a sample of each distribution (DV/MINE, NWJ, JS, Wasserstein) accept either that matrix
  (`scores=`) or two flat tensors (`joint_scores=`, `marginal_scores=`) — e.g. T_θ on a batch and on the same
  batch with independently permuted modalities (MDM Algorithm 1, see `multivariate.py`).
* Optional boolean masks mark valid rows (`mask=` [B] for a matrix; `joint_mask=`, `marginal_mask=` for flat
  tensors). Every expectation of an exponential is a masked log-mean-exp with the maximum subtracted; nothing
  is exponentiated and then summed. An expectation over zero valid samples is defined as 0 (no NaN, zero
  gradient), so an all-masked batch contributes nothing.

Every function returns a scalar in nats: a lower bound (to maximise), or for CLUB an upper bound.
"""

import math

from keras import backend, ops

# --------------------------------------------------------------------------------------------- helpers


def _dtype(x):
    return backend.standardize_dtype(x.dtype)


def _float(x):
    x = ops.convert_to_tensor(x)
    if "float" not in _dtype(x):
        x = ops.cast(x, "float32")
    return x


def _mask_like(mask, x):
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    if _dtype(mask) != "bool":
        mask = ops.cast(mask, "float32") > 0.5
    return ops.broadcast_to(mask, ops.shape(x))


def masked_mean(x, *, mask=None, axis=None, keepdims=False):
    """Mean of `x` over `axis` restricted to `mask` (all of `x` when None); 0 where nothing is valid.

    Example:
    >>> masked_mean(ops.array([1.0, 2.0, 9.0]), mask=ops.array([True, True, False]))  # 1.5
    """
    x = _float(x)
    if mask is None:
        return ops.mean(x, axis=axis, keepdims=keepdims)
    mask = _mask_like(mask, x)
    w = ops.cast(mask, x.dtype)
    total = ops.sum(ops.where(mask, x, 0.0), axis=axis, keepdims=keepdims)
    count = ops.sum(w, axis=axis, keepdims=keepdims)
    return total / ops.maximum(count, 1.0)


def log_mean_exp(x, *, mask=None, axis=None, keepdims=False):
    """log(mean(exp(x))) over `axis`, restricted to `mask`, computed stably; 0 where nothing is valid.

    log (1/n) Σ_i exp(x_i) = m + log Σ_i exp(x_i − m) − log n, with m = max_i x_i (held constant for the
    gradient, which is exact because the expression does not depend on m).

    Example:
    >>> log_mean_exp(ops.array([0.0, 0.0]))  # 0.0
    """
    x = _float(x)
    if mask is None:
        mask = ops.ones(ops.shape(x), dtype="bool")
    mask = _mask_like(mask, x)
    lowest = {"float16": -6.0e4, "bfloat16": -3.0e38, "float32": -3.0e38}.get(_dtype(x), -1.0e300)
    lowest = ops.convert_to_tensor(lowest, dtype=x.dtype)
    xm = ops.where(mask, x, lowest)
    m = ops.stop_gradient(ops.max(xm, axis=axis, keepdims=True))
    e = ops.where(mask, ops.exp(xm - m), 0.0)
    s = ops.sum(e, axis=axis, keepdims=True)
    n = ops.sum(ops.cast(mask, x.dtype), axis=axis, keepdims=True)
    valid = n > 0.0
    out = (
        ops.log(ops.where(valid, s, 1.0)) + ops.where(valid, m, 0.0) - ops.log(ops.maximum(n, 1.0))
    )
    out = ops.where(valid, out, 0.0)
    if not keepdims:
        out = ops.squeeze(out, axis=axis) if axis is not None else ops.reshape(out, ())
    return out


def split_score_matrix(*, scores, mask=None):
    """Split a score matrix into its joint (diagonal) and marginal (off-diagonal) samples.

    Args:
        scores: tensor [B, B], `scores[i, j] = f(x_i, y_j)`.
        mask: optional bool [B], valid rows/columns.

    Returns:
        `(joint_scores [B], joint_mask [B] or None, marginal_scores [B, B], marginal_mask [B, B])`; the
        marginal mask excludes the diagonal and any pair touching an invalid row.

    Example:
    >>> joint, jm, marg, mm = split_score_matrix(scores=ops.zeros((3, 3)))
    """
    scores = _float(scores)
    n = ops.shape(scores)[0]
    off_diag = ops.logical_not(ops.cast(ops.eye(n), "bool"))
    joint = ops.diagonal(scores)
    if mask is None:
        return joint, None, scores, off_diag
    mask = _mask_like(mask, joint)
    pair = ops.logical_and(ops.expand_dims(mask, 1), ops.expand_dims(mask, 0))
    return joint, mask, scores, ops.logical_and(pair, off_diag)


def _joint_and_marginal(scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask):
    if scores is not None:
        if joint_scores is not None or marginal_scores is not None:
            raise ValueError(
                "Pass either `scores` (a [B, B] score matrix) or `joint_scores` and `marginal_scores`, not both."
            )
        if len(ops.shape(scores)) != 2:
            raise ValueError(
                f"`scores` must be a [B, B] score matrix; got shape {ops.shape(scores)}."
            )
        return split_score_matrix(scores=scores, mask=mask)
    if joint_scores is None or marginal_scores is None:
        raise ValueError(
            "Pass `scores` (a [B, B] score matrix) or both `joint_scores` and `marginal_scores`."
        )
    if mask is not None:
        raise ValueError(
            "`mask` goes with `scores`; use `joint_mask` / `marginal_mask` with flat scores."
        )
    joint_scores = _float(joint_scores)
    marginal_scores = _float(marginal_scores)
    return (
        joint_scores,
        _mask_like(joint_mask, joint_scores),
        marginal_scores,
        _mask_like(marginal_mask, marginal_scores),
    )


# ----------------------------------------------------------------------------------------------- bounds


def barber_agakov_lower_bound(*, log_likelihood, entropy, mask=None):
    """Barber–Agakov lower bound: I(X;Y) ≥ E_p(x,y)[log q(y|x)] + H(Y).

    Tight when q(y|x) = p(y|x); valid for any q as long as `entropy` is the true H(Y) (with an estimated H(Y),
    e.g. MMIM's polarity GMM, it is only an estimate).

    Args:
        log_likelihood: tensor [B], log q(y_i|x_i) (e.g. `GaussianConditional.log_likelihood`).
        entropy: scalar tensor, H(Y) in nats (e.g. `PolarityGMMEntropy`, or a closed form).
        mask: optional bool [B].

    Returns:
        Scalar tensor.

    Reference: Barber & Agakov (2004); MMIM (Han et al., 2021) eq. 3 and eq. 9.

    Example:
    >>> barber_agakov_lower_bound(log_likelihood=ops.array([-1.0, -2.0]), entropy=3.0)  # 1.5
    """
    mean_ll = masked_mean(log_likelihood, mask=mask)
    return mean_ll + ops.cast(entropy, mean_ll.dtype)


def infonce_lower_bound(*, scores, mask=None):
    """InfoNCE (CPC) lower bound from a score matrix: I ≥ (1/K) Σ_i [s_ii − log Σ_j exp s_ij] + log K.

    Row i is a context (e.g. the fusion Z_i), column j a candidate (e.g. h_m^j); K is the number of valid
    samples. The bound can never exceed log K (Poole et al., 2019, eq. 12) — its well-known ceiling.

    Args:
        scores: tensor [B, B] of log-scores (`log s(x_i, y_j)`), diagonal = joint.
        mask: optional bool [B].

    Returns:
        Scalar tensor. `log K − bound` is the CPC loss L_N of MMIM eq. 11.

    Reference: van den Oord et al. (2018); Poole et al. (2019) eq. 12; MMIM eq. 10–11; Self-MI eq. 11–14.

    Example:
    >>> infonce_lower_bound(scores=10.0 * ops.eye(4))  # close to log 4
    """
    scores = _float(scores)
    joint, jmask, _, _ = split_score_matrix(scores=scores, mask=mask)
    if mask is None:
        log_norm = ops.logsumexp(scores, axis=1)
        k = ops.cast(ops.shape(scores)[0], scores.dtype)
        return ops.mean(joint - log_norm) + ops.log(k)
    col = ops.broadcast_to(ops.expand_dims(jmask, 0), ops.shape(scores))
    k = ops.sum(ops.cast(jmask, scores.dtype))
    # log Σ_j = log-mean-exp + log K
    log_norm = log_mean_exp(scores, mask=col, axis=1) + ops.log(ops.maximum(k, 1.0))
    return masked_mean(joint - log_norm, mask=jmask) + ops.where(
        k > 0, ops.log(ops.maximum(k, 1.0)), 0.0
    )


def donsker_varadhan_lower_bound(
    *,
    scores=None,
    joint_scores=None,
    marginal_scores=None,
    mask=None,
    joint_mask=None,
    marginal_mask=None,
    log_moving_average=None,
):
    """Donsker–Varadhan / MINE lower bound: I ≥ E_p[T] − log E_q[e^T] (q = product of marginals).

    With `log_moving_average` (log of a running average of E_q[e^T], see `update_log_moving_average`; keep it
    as model state with `MINEMovingAverage`, which also updates it outside the loss) the
    returned value is unchanged but its gradient is MINE's bias-corrected one: ∇E_q[e^T] / EMA instead of
    ∇E_q[e^T] / Ê_q[e^T] over the batch (Belghazi et al., 2018, §3.2).

    Args:
        scores: tensor [B, B] score matrix, or
        joint_scores, marginal_scores: flat tensors of T on joint and on marginal samples.
        mask / joint_mask / marginal_mask: optional bool masks (see module docstring).
        log_moving_average: optional scalar tensor, held constant.

    Returns:
        Scalar tensor.

    Reference: Donsker & Varadhan (1983); MINE (Belghazi et al., 2018) eq. 10; MDM (Colombo et al., 2021)
    eq. 6 (multivariate: q = Π_j p(x_j)).

    Example:
    >>> donsker_varadhan_lower_bound(joint_scores=ops.ones(4), marginal_scores=ops.zeros(8))  # 1.0
    """
    joint, jmask, marg, mmask = _joint_and_marginal(
        scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask
    )
    lme = log_mean_exp(marg, mask=mmask)
    if log_moving_average is not None:
        log_ma = ops.stop_gradient(ops.cast(log_moving_average, lme.dtype))
        ratio = ops.exp(lme - log_ma)
        lme = ops.stop_gradient(lme) + ratio - ops.stop_gradient(ratio)
    return masked_mean(joint, mask=jmask) - lme


def update_log_moving_average(*, log_moving_average, marginal_scores, decay=0.99, mask=None):
    """One step of MINE's moving average of E_q[e^T], kept in log space: log(decay·EMA + (1−decay)·Ê).

    Args:
        log_moving_average: scalar tensor, the current log EMA (initialise with the first batch's value).
        marginal_scores: tensor of T on marginal samples (flat, or a score matrix with `mask` = its marginal mask).
        decay: float in [0, 1).
        mask: optional bool mask of `marginal_scores`.

    Returns:
        Scalar tensor (no gradient).

    Example:
    >>> update_log_moving_average(log_moving_average=0.0, marginal_scores=ops.zeros(4))  # 0.0
    """
    lme = ops.stop_gradient(log_mean_exp(marginal_scores, mask=mask))
    log_ma = ops.cast(log_moving_average, lme.dtype)
    return ops.logaddexp(log_ma + math.log(decay), lme + math.log1p(-decay))


def nwj_lower_bound(
    *,
    scores=None,
    joint_scores=None,
    marginal_scores=None,
    mask=None,
    joint_mask=None,
    marginal_mask=None,
):
    """NWJ / f-divergence (KL) lower bound: I ≥ E_p[T] − E_q[e^(T−1)].

    E_q[e^(T−1)] is computed as exp(log-mean-exp(T) − 1). The optimal critic is T* = 1 + log p/q, so
    the estimator's variance grows like e^I (Song & Ermon, 2020) — the benchmark shows it.

    Args:
        scores: tensor [B, B] score matrix, or
        joint_scores, marginal_scores: flat tensors of T on joint and on marginal samples.
        mask / joint_mask / marginal_mask: optional bool masks.

    Returns:
        Scalar tensor.

    Reference: Nguyen, Wainwright & Jordan (2010); Poole et al. (2019) eq. 8; MDM eq. 7.

    Example:
    >>> nwj_lower_bound(joint_scores=ops.ones(4), marginal_scores=ops.ones(8))  # 1 − e^0 = 0.0
    """
    joint, jmask, marg, mmask = _joint_and_marginal(
        scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask
    )
    second = ops.exp(log_mean_exp(marg - 1.0, mask=mmask))
    if mmask is not None:
        second = ops.where(ops.any(mmask), second, 0.0)
    return masked_mean(joint, mask=jmask) - second


def js_fgan_lower_bound(
    *,
    scores=None,
    joint_scores=None,
    marginal_scores=None,
    mask=None,
    joint_mask=None,
    marginal_mask=None,
):
    """f-GAN Jensen–Shannon lower bound: E_p[−softplus(−T)] − E_q[softplus(T)] ≤ 2·JSD(p‖q) − 2 log 2.

    This bounds a divergence, not the MI; use `js_lower_bound` for an MI estimate trained with it.

    Reference: Nowozin et al. (2016), f-GAN, Table 2 (GAN row); Hjelm et al. (2019), DIM eq. 4.

    Example:
    >>> js_fgan_lower_bound(joint_scores=ops.zeros(2), marginal_scores=ops.zeros(2))  # −2 log 2
    """
    joint, jmask, marg, mmask = _joint_and_marginal(
        scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask
    )
    return masked_mean(-ops.softplus(-joint), mask=jmask) - masked_mean(
        ops.softplus(marg), mask=mmask
    )


def js_lower_bound(
    *,
    scores=None,
    joint_scores=None,
    marginal_scores=None,
    mask=None,
    joint_mask=None,
    marginal_mask=None,
):
    """Jensen–Shannon-trained MI lower bound: the value of NWJ at T + 1, the gradient of the f-GAN JS bound.

    The JS objective is low-variance but bounds a divergence; its optimal critic T* = log p/q is the NWJ
    critic shifted by one, so NWJ(T + 1) = E_p[T] + 1 − E_q[e^T] is a valid MI lower bound for any T, and
    is the value reported. Gradients are those of `js_fgan_lower_bound`.

    Args: as `nwj_lower_bound`.

    Returns:
        Scalar tensor (nats).

    Reference: Poole et al. (2019) §2.3 ("JS"); Hjelm et al. (2019).

    Example:
    >>> js_lower_bound(joint_scores=ops.zeros(4), marginal_scores=ops.zeros(8))  # 0 + 1 − 1 = 0.0
    """
    joint, jmask, marg, mmask = _joint_and_marginal(
        scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask
    )
    js = js_fgan_lower_bound(
        joint_scores=joint, marginal_scores=marg, joint_mask=jmask, marginal_mask=mmask
    )
    nwj = nwj_lower_bound(
        joint_scores=joint + 1.0, marginal_scores=marg + 1.0, joint_mask=jmask, marginal_mask=mmask
    )
    return js + ops.stop_gradient(nwj - js)


def wasserstein_dependency(
    *,
    scores=None,
    joint_scores=None,
    marginal_scores=None,
    mask=None,
    joint_mask=None,
    marginal_mask=None,
    log_marginal=False,
):
    """Wasserstein dependency measure (Kantorovich–Rubinstein): W(p, q) ≥ E_p[T] − E_q[T] for 1-Lipschitz T.

    It is only a bound on the Wasserstein-1 distance between the joint and the product of marginals when
    the critic is (at most) 1-Lipschitz — enforce it with `StatisticNetwork(lipschitz="spectral")` and/or
    `gradient_penalty`. It is not in nats and not comparable to MI values.

    MDM's eq. 8 prints `E_p[T] − log E_q[T]`; the Kantorovich–Rubinstein duality it cites has no logarithm,
    so the default is the critic difference. `log_marginal=True` reproduces eq. 8 literally (needs T > 0,
    e.g. the sigmoid output of MDM's Table 4).

    Args: as `nwj_lower_bound`, plus
        log_marginal: bool, use eq. 8's `− log E_q[T]` term.

    Returns:
        Scalar tensor.

    Reference: Villani (2008) Thm 5.10; Ozair et al. (2019), WPC; MDM eq. 8.

    Example:
    >>> wasserstein_dependency(joint_scores=ops.ones(2), marginal_scores=ops.zeros(2))  # 1.0
    """
    joint, jmask, marg, mmask = _joint_and_marginal(
        scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask
    )
    second = masked_mean(marg, mask=mmask)
    if log_marginal:
        second = ops.log(ops.maximum(second, 1e-12))
    return masked_mean(joint, mask=jmask) - second


def gradient_penalty(*, gradients, target=1.0, one_sided=False):
    """WGAN-GP penalty E[(‖∇T(x̂)‖₂ − target)²] from the critic's input gradients at interpolates x̂.

    Taking a gradient is backend-specific, so `gradients` (of T w.r.t. its input at
    `interpolate_samples(...)`) come from `input_gradients` (or `StatisticNetwork.gradient_penalty`, which
    does all of it) and this pure function turns them into the penalty.
    `one_sided=True` penalises only norms above `target` (Petzka et al., 2018).

    Args:
        gradients: tensor [B, ...], one gradient per sample.
        target: float, the Lipschitz constant to enforce.
        one_sided: bool.

    Returns:
        Scalar tensor.

    Reference: Gulrajani et al. (2017) eq. 3.

    Example:
    >>> gradient_penalty(gradients=ops.ones((2, 4)))  # (2 − 1)² = 1.0
    """
    g = _float(gradients)
    g = ops.reshape(g, (ops.shape(g)[0], -1))
    norm = ops.sqrt(ops.sum(ops.square(g), axis=-1) + 1e-12)
    gap = norm - target
    if one_sided:
        gap = ops.relu(gap)
    return ops.mean(ops.square(gap))


def club_upper_bound(*, log_likelihood_matrix, mask=None):
    """CLUB upper bound: I ≤ (1/N) Σ_i log q(y_i|x_i) − (1/N²) Σ_i Σ_j log q(y_j|x_i).

    An upper bound when q(y|x) approximates p(y|x) well enough (Cheng et al., 2020, Thm 3.2); with a poor q
    it is only an estimate.

    Args:
        log_likelihood_matrix: tensor [B, B], `L[i, j] = log q(y_j|x_i)`
            (`GaussianConditional.log_likelihood_matrix`).
        mask: optional bool [B].

    Returns:
        Scalar tensor.

    Reference: Cheng et al. (2020) eq. 4–5; MIRD (Qian et al.) eq. 11–12, 14.

    Example:
    >>> club_upper_bound(log_likelihood_matrix=ops.eye(2))  # 1 − 0.5 = 0.5
    """
    lm = _float(log_likelihood_matrix)
    if len(ops.shape(lm)) != 2:
        raise ValueError(f"`log_likelihood_matrix` must be [B, B]; got shape {ops.shape(lm)}.")
    positive = ops.diagonal(lm)
    if mask is None:
        return ops.mean(positive) - ops.mean(lm)
    mask = _mask_like(mask, positive)
    pair = ops.logical_and(ops.expand_dims(mask, 1), ops.expand_dims(mask, 0))
    return masked_mean(positive, mask=mask) - masked_mean(lm, mask=pair)


def club_sample_upper_bound(*, log_likelihood, shuffled_log_likelihood, mask=None):
    """CLUB-sample: I ≈ (1/N) Σ_i [log q(y_i|x_i) − log q(y_σ(i)|x_i)] with a random permutation σ.

    An unbiased single-negative estimate of CLUB (O(N) instead of O(N²)).

    Args:
        log_likelihood: tensor [B], log q(y_i|x_i).
        shuffled_log_likelihood: tensor [B], log q(y_σ(i)|x_i).
        mask: optional bool [B] (combine the masks of i and σ(i) before passing it).

    Returns:
        Scalar tensor.

    Reference: Cheng et al. (2020) eq. 8 (CLUB-S).

    Example:
    >>> club_sample_upper_bound(log_likelihood=ops.ones(2), shuffled_log_likelihood=ops.zeros(2))  # 1.0
    """
    log_likelihood = _float(log_likelihood)
    diff = log_likelihood - ops.cast(shuffled_log_likelihood, log_likelihood.dtype)
    return masked_mean(diff, mask=mask)
