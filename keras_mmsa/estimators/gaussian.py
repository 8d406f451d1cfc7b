"""Closed-form Gaussian quantities: log-likelihoods, Cholesky log-determinants, entropies.

Everything here is a keyword-only pure function over tensors written with `keras.ops`, so it runs on any
backend and inside `jit_compile=True` (TensorFlow XLA).
"""

import math

from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_likelihood(*, y, mean, logvar, variance_free=False):
    """Log-density of a diagonal Gaussian, summed over the last axis.

    log N(y; μ, diag σ²) = Σ_d [ −(y_d − μ_d)² / (2σ_d²) − ½ log σ_d² − ½ log 2π ]

    With `variance_free=True` this returns MMIM's official form Σ_d −(y_d − μ_d)² / (2σ_d²): it drops
    −½ log σ² and the constant, which is NOT a log-likelihood (maximising it drives log σ² upward without
    limit; DESIGN §2 "Known defects"). It exists only to reproduce the reference implementation.

    Args:
        y: tensor [..., D], the observed values.
        mean: tensor broadcastable to `y`, the Gaussian mean μ.
        logvar: tensor broadcastable to `y`, the log-variance log σ².
        variance_free: bool, reproduce MMIM's official variance-free "likelihood".

    Returns:
        Tensor [...]: the log-likelihood of each row.

    Example:
    >>> y = ops.zeros((2, 3))
    >>> ll = gaussian_log_likelihood(y=y, mean=y, logvar=y)  # 3 · (−½ log 2π) each
    """
    y = ops.convert_to_tensor(y)
    mean = ops.cast(mean, y.dtype)
    logvar = ops.cast(logvar, y.dtype)
    quad = -0.5 * ops.square(y - mean) * ops.exp(-logvar)
    if variance_free:
        return ops.sum(quad, axis=-1)
    return ops.sum(quad - 0.5 * logvar - 0.5 * LOG_2PI, axis=-1)


PAIRS = ("auto", "broadcast", "expanded")

# `pairs="auto"` broadcasts [B_x, B_y, D] up to this many elements (16 MiB in float32), and expands beyond.
BROADCAST_LIMIT = 2**22


def gaussian_log_likelihood_matrix(*, y, mean, logvar, variance_free=False, pairs="auto"):
    """All-pairs diagonal-Gaussian log-likelihoods: `L[i, j] = log N(y_j; μ_i, diag σ_i²)`.

    Row i is the conditional q(·|x_i), column j the sample y_j, so the diagonal holds the joint pairs and
    the off-diagonal the product of marginals (the layout of `club_upper_bound`).

    Two ways to form the quadratic form Σ_d (y_jd − μ_id)² / σ_id²:
    * "broadcast": the difference y_jd − μ_id over a [B_x, B_y, D] broadcast — exact everywhere.
    * "expanded": one matrix product, Σ_d y_jd² p_id − 2 Σ_d y_jd μ_id p_id + Σ_d μ_id² p_id with p = 1/σ²,
      on data centred by the batch mean of y (the form is shift-invariant). Where q fits (μ_i ≈ y_i, small
      σ²) the three terms are large and cancel: in float32, log σ² = −10 and features of scale 5–10 lose
      from 1 to over 10 nats. So the diagonal (the joint pairs, CLUB's positive term) is always recomputed in the
      difference form; off-diagonal entries keep float32 precision relative to their (large) magnitude.
    * "auto" (default): "broadcast" when B_x·B_y·D ≤ `BROADCAST_LIMIT` (2²² elements) with static shapes,
      else "expanded".

    Args:
        y: tensor [B_y, D].
        mean: tensor [B_x, D].
        logvar: tensor [B_x, D].
        variance_free: bool, MMIM's official form (see `gaussian_log_likelihood`).
        pairs: "auto", "broadcast" or "expanded" (see above).

    Returns:
        Tensor [B_x, B_y].

    Example:
    >>> L = gaussian_log_likelihood_matrix(y=ops.ones((4, 2)), mean=ops.zeros((3, 2)), logvar=ops.zeros((3, 2)))
    """
    if pairs not in PAIRS:
        raise ValueError(f"`pairs` must be one of {PAIRS}; got {pairs!r}.")
    y = ops.convert_to_tensor(y)
    mean = ops.cast(mean, y.dtype)
    logvar = ops.cast(logvar, y.dtype)
    precision = ops.exp(-logvar)  # [B_x, D]
    if pairs == "auto":
        sizes = (mean.shape[0], y.shape[0], y.shape[-1])
        static = all(isinstance(s, int) for s in sizes)
        pairs = "broadcast" if static and math.prod(sizes) <= BROADCAST_LIMIT else "expanded"
    if pairs == "broadcast":
        diff = ops.expand_dims(y, 0) - ops.expand_dims(mean, 1)  # [B_x, B_y, D]
        quad = ops.sum(ops.square(diff) * ops.expand_dims(precision, 1), axis=-1)
    else:
        shift = ops.stop_gradient(ops.mean(y, axis=0, keepdims=True))
        yc, mc = y - shift, mean - shift
        quad = (
            ops.matmul(precision, ops.transpose(ops.square(yc)))
            - 2.0 * ops.matmul(mc * precision, ops.transpose(yc))
            + ops.sum(ops.square(mc) * precision, axis=-1, keepdims=True)
        )
        # The expansion can round to a tiny negative number; the true quadratic form is >= 0.
        quad = ops.maximum(quad, 0.0)
        # The diagonal in the difference form: row i against column min(i, B_y − 1) (only [i, i] is used).
        rows, cols = ops.shape(mean)[0], ops.shape(y)[0]
        col_of_row = ops.minimum(ops.arange(rows, dtype="int32"), cols - 1)
        diag_diff = ops.take(y, col_of_row, axis=0) - mean
        diag_quad = ops.sum(ops.square(diag_diff) * precision, axis=-1, keepdims=True)  # [B_x, 1]
        on_diag = ops.expand_dims(ops.arange(rows, dtype="int32"), 1) == ops.expand_dims(
            ops.arange(cols, dtype="int32"), 0
        )
        quad = ops.where(on_diag, diag_quad, quad)
    out = -0.5 * quad
    if variance_free:
        return out
    dim = ops.cast(ops.shape(y)[-1], y.dtype)
    return out - 0.5 * ops.sum(logvar, axis=-1, keepdims=True) - 0.5 * dim * LOG_2PI


def cholesky_log_det(*, matrix, jitter=0.0):
    """log det(A + jitter·I) of a symmetric positive (semi-)definite matrix via its Cholesky factor.

    log det A = 2 Σ_i log L_ii, where A = L Lᵀ. The input is symmetrised first ((A + Aᵀ)/2) so round-off
    asymmetry cannot break the factorisation. A matrix that is not positive definite even after the jitter
    has no real log-determinant: eagerly Keras raises, under XLA the result is NaN — callers that cannot
    rule this out (e.g. an empirical covariance of fewer than D samples) must pass a positive `jitter`.

    Args:
        matrix: tensor [..., D, D].
        jitter: float >= 0 added to the diagonal.

    Returns:
        Tensor [...]: the log-determinants.

    Example:
    >>> cholesky_log_det(matrix=2.0 * ops.eye(3))  # 3 log 2
    """
    matrix = ops.convert_to_tensor(matrix)
    matrix = 0.5 * (matrix + ops.swapaxes(matrix, -1, -2))
    if jitter:
        matrix = matrix + jitter * ops.eye(ops.shape(matrix)[-1], dtype=matrix.dtype)
    chol = ops.cholesky(matrix)
    diag = ops.diagonal(chol, axis1=-2, axis2=-1)
    return 2.0 * ops.sum(ops.log(diag), axis=-1)


def gaussian_entropy(*, covariance, jitter=0.0, constant_free=False):
    """Differential entropy of a multivariate Gaussian, in nats (MMIM eq. 6).

    H = ½ log det(2πe Σ) = ½ (k log 2πe + log det Σ), with Σ ← Σ + jitter·I and a Cholesky log-det.
    `constant_free=True` returns ½ log det Σ only (the form MMIM's eq. 8 builds on).

    Args:
        covariance: tensor [..., k, k].
        jitter: float >= 0 added to the diagonal before the log-determinant.
        constant_free: bool, drop the ½ k log 2πe constant.

    Returns:
        Tensor [...].

    Example:
    >>> gaussian_entropy(covariance=ops.eye(2))  # log 2πe ≈ 2.8379
    """
    covariance = ops.convert_to_tensor(covariance)
    log_det = cholesky_log_det(matrix=covariance, jitter=jitter)
    if constant_free:
        return 0.5 * log_det
    k = ops.cast(ops.shape(covariance)[-1], covariance.dtype)
    return 0.5 * (k * (LOG_2PI + 1.0) + log_det)


def correlated_gaussian_mi(*, rho, dim):
    """True MI of the correlated-Gaussian benchmark: y = ρx + √(1−ρ²)ε, x, ε ~ N(0, I_d).

    I(x; y) = −(d/2) log(1 − ρ²) nats (unchanged by any elementwise bijection of y, e.g. the cubic variant).

    Args:
        rho: float in (−1, 1), the per-dimension correlation.
        dim: int, the dimension d.

    Returns:
        float.

    Example:
    >>> round(correlated_gaussian_mi(rho=0.4258, dim=20), 2)
    2.0
    """
    return -0.5 * dim * math.log(1.0 - rho * rho)


def mi_to_rho(*, mi, dim):
    """The correlation ρ = √(1 − exp(−2I/d)) that gives the correlated-Gaussian benchmark MI `mi` nats.

    Example:
    >>> round(mi_to_rho(mi=2.0, dim=20), 4)
    0.4258
    """
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
