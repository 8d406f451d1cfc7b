"""Samples from the product of marginals by seeded permutation, and total-correlation bounds for k ≥ 2.

The multivariate dependency (total correlation) of k modalities is
TC = KL(p(x_1, ..., x_k) ‖ Π_j p(x_j)); the same variational bounds as for two variables apply, with the
"marginal" samples drawn from Π_j p(x_j) by permuting each modality of the batch independently
(MDM Algorithm 1: permutations σ_a, σ_v, σ_l).
"""

import keras
from keras import ops

from keras_mmsa.estimators import bounds

MEASURES = ("kl", "f", "js", "w")


def random_permutation(batch_size, *, seed=None):
    """A uniformly random permutation of `range(batch_size)` (argsort of i.i.d. uniforms).

    Args:
        batch_size: int or scalar tensor (may be dynamic).
        seed: a `keras.random.SeedGenerator` (recommended: reproducible and different at every call), an
            int, or None.

    Returns:
        int32 tensor [batch_size].

    Example:
    >>> perm = random_permutation(8, seed=keras.random.SeedGenerator(0))
    """
    u = keras.random.uniform((batch_size,), seed=seed)
    return ops.cast(ops.argsort(u), "int32")


def derangement(batch_size, *, seed=None):
    """A random permutation with no fixed point: a random cyclic shift by 1..B−1 of a random permutation.

    Use it when a "negative" must never be its own positive (e.g. CLUB-sample with tiny batches).

    Example:
    >>> d = derangement(5, seed=keras.random.SeedGenerator(1))
    """
    perm = random_permutation(batch_size, seed=seed)
    n = ops.shape(perm)[0]
    shift = keras.random.randint((), 1, ops.maximum(n, 2), seed=seed, dtype="int32")
    # σ(perm[i]) = perm[(i + shift) mod n]: no fixed point because shift ∈ [1, n−1].
    shifted = ops.take(perm, ops.mod(ops.arange(n, dtype="int32") + shift, n))
    return ops.scatter(ops.expand_dims(perm, 1), shifted, (n,))


def sample_product_of_marginals(modalities, *, seed=None, mask=None, keep_first=False):
    """Independently permute each modality of a batch: a sample of Π_j p(x_j) of the same size.

    Args:
        modalities: list/tuple (or dict) of k ≥ 2 tensors with the same leading batch size.
        seed: `keras.random.SeedGenerator`, int, or None; each modality draws its own permutation.
        mask: optional bool [B] of valid rows; the returned mask is valid where every permuted row is valid.
        keep_first: bool, leave the first modality (dict: first key) in place — the same distribution,
            one permutation fewer.

    Returns:
        `(permuted, marginal_mask)`: the permuted modalities in the input's structure, and a bool [B] mask
        (None when `mask` is None).

    Reference: MDM (Colombo et al., 2021) Algorithm 1.

    Example:
    >>> gen = keras.random.SeedGenerator(0)
    >>> (a, v, t), _ = sample_product_of_marginals([ops.ones((4, 2)), ops.ones((4, 3)), ops.ones((4, 5))], seed=gen)
    """
    is_dict = isinstance(modalities, dict)
    keys = list(modalities.keys()) if is_dict else None
    values = [modalities[k] for k in keys] if is_dict else list(modalities)
    if len(values) < 2:
        raise ValueError(
            f"Need at least 2 modalities to sample a product of marginals; got {len(values)}."
        )
    batch = ops.shape(values[0])[0]
    out, out_mask = [], None
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        mask = mask if keras.backend.standardize_dtype(mask.dtype) == "bool" else mask > 0
    for i, v in enumerate(values):
        if keep_first and i == 0:
            out.append(v)
            perm_mask = mask
        else:
            perm = random_permutation(batch, seed=seed)
            out.append(ops.take(v, perm, axis=0))
            perm_mask = None if mask is None else ops.take(mask, perm, axis=0)
        if perm_mask is not None:
            out_mask = perm_mask if out_mask is None else ops.logical_and(out_mask, perm_mask)
    if is_dict:
        return dict(zip(keys, out)), out_mask
    return type(modalities)(out) if isinstance(modalities, tuple) else out, out_mask


def total_correlation_lower_bound(
    *, joint_scores, marginal_scores, measure="kl", joint_mask=None, marginal_mask=None, **kwargs
):
    """A multivariate dependency bound from T_θ on joint samples and on product-of-marginals samples.

    measure: "kl" → Donsker–Varadhan (MDM eq. 6; kwargs: `log_moving_average`), "f" → NWJ (eq. 7),
    "js" → JS-trained NWJ value (Poole et al., 2019), "w" → Wasserstein critic difference (eq. 8;
    kwargs: `log_marginal`).

    Args:
        joint_scores: tensor [B], T_θ(Z(x_1, ..., x_k)).
        marginal_scores: tensor [B], T_θ(Z(x_1^σ1, ..., x_k^σk)) (see `sample_product_of_marginals`).
        measure: one of "kl", "f", "js", "w".
        joint_mask, marginal_mask: optional bool [B].

    Returns:
        Scalar tensor.

    Reference: MDM (Colombo et al., 2021) Theorem 1, eq. 6–8.

    Example:
    >>> tc = total_correlation_lower_bound(joint_scores=ops.ones(4), marginal_scores=ops.zeros(4), measure="f")
    """
    fns = {
        "kl": bounds.donsker_varadhan_lower_bound,
        "f": bounds.nwj_lower_bound,
        "js": bounds.js_lower_bound,
        "w": bounds.wasserstein_dependency,
    }
    if measure not in fns:
        raise ValueError(f"Unknown dependency measure {measure!r}; expected one of {MEASURES}.")
    return fns[measure](
        joint_scores=joint_scores,
        marginal_scores=marginal_scores,
        joint_mask=joint_mask,
        marginal_mask=marginal_mask,
        **kwargs,
    )
