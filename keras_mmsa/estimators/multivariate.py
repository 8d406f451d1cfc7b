"""Samples from the product of marginals by seeded permutation, and total-correlation bounds for k ≥ 2.

The multivariate dependency (total correlation) of k modalities is
TC = KL(p(x_1, ..., x_k) ‖ Π_j p(x_j)); the same variational bounds as for two variables apply, with the
"marginal" samples drawn from Π_j p(x_j) by permuting each modality of the batch independently
(MDM Algorithm 1: permutations σ_a, σ_v, σ_l) — the tensors of one modality (e.g. `audio` and
`audio_lengths`) share one permutation.
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


def default_groups(keys):
    """The default permutation groups of a dict's keys: one per modality of the inputs dict, one per other key.

    Text keys (`token_ids`, `padding_mask`, `segment_ids`), audio keys (`audio`, `audio_lengths`) and vision
    keys (`vision`, `vision_lengths`) — `keras_mmsa.data.spec` — each form one group (the keys present);
    every other key is a group of its own, in order of first appearance.

    Example:
    >>> default_groups(["token_ids", "padding_mask", "audio", "audio_lengths", "z"])
    [('token_ids', 'padding_mask'), ('audio', 'audio_lengths'), ('z',)]
    """
    # Imported here: importing keras_mmsa.data loads the tf.data pipeline, which the estimators do not need.
    from keras_mmsa.data.spec import MODALITY_KEYS

    group_of = {k: name for name, ks in MODALITY_KEYS.items() for k in ks}
    groups, index = [], {}
    for key in keys:
        tag = group_of.get(key, ("key", key))
        if tag not in index:
            index[tag] = len(groups)
            groups.append([])
        groups[index[tag]].append(key)
    return [tuple(g) for g in groups]


def _resolve_groups(groups, keys):
    """Validate explicit groups (sequences of keys/indices) and add a singleton group for each other key."""
    seen = {}
    out = []
    for g in groups:
        g = tuple(g)
        if not g:
            raise ValueError("Empty permutation group in `groups`.")
        for key in g:
            if key not in keys:
                raise ValueError(
                    f"`groups` names an unknown key {key!r}; the inputs have {list(keys)}."
                )
            if key in seen:
                raise ValueError(f"Key {key!r} is in more than one group of `groups`.")
            seen[key] = True
        out.append(g)
    return out + [(k,) for k in keys if k not in seen]


def sample_product_of_marginals(modalities, *, seed=None, mask=None, keep_first=False, groups=None):
    """Permute each modality of a batch independently: a sample of Π_j p(x_j) of the same size.

    A modality can be several tensors whose rows must stay aligned (the text of the inputs dict is
    `token_ids` + `padding_mask` + `segment_ids`; audio is `audio` + `audio_lengths`): the tensors of one
    **group** share one permutation, and each group gets its own.

    Grouping:
    * a dict with `groups=None` groups the keys of `keras_mmsa.data.spec` by modality (text, audio, vision;
      see `default_groups`); any other key (a per-modality representation `{"a": ..., "v": ..., "l": ...}`,
      an example index, a label) is a group of its own, i.e. it is treated as one more variable of the
      product and permuted independently. Pass a label or index as a member of a group to keep it aligned
      with that modality, or leave it out of `modalities` to keep it in place.
    * a list/tuple with `groups=None`: every element is its own group.
    * `groups=`: a sequence of groups, each a sequence of keys (dict) or indices (list/tuple); an element not
      named in any group is a group of its own.

    Args:
        modalities: dict, list or tuple of tensors with the same leading batch size, at least 2 groups.
        seed: `keras.random.SeedGenerator`, int, or None; each group draws its own permutation.
        mask: optional bool [B] of valid rows; the returned mask is valid where every permuted row is valid.
        keep_first: bool, leave the first group (the one holding the first key/element) in place — the same
            distribution, one permutation fewer.
        groups: optional sequence of groups (see above).

    Returns:
        `(permuted, marginal_mask)`: the permuted modalities in the input's structure, and a bool [B] mask
        (None when `mask` is None).

    Reference: MDM (Colombo et al., 2021) Algorithm 1.

    Example:
    >>> gen = keras.random.SeedGenerator(0)
    >>> (a, v, t), _ = sample_product_of_marginals([ops.ones((4, 2)), ops.ones((4, 3)), ops.ones((4, 5))], seed=gen)
    >>> inputs = {"token_ids": ops.ones((4, 7), "int32"), "padding_mask": ops.ones((4, 7), "bool"),
    ...           "audio": ops.ones((4, 5, 3)), "audio_lengths": ops.ones((4,), "int32")}
    >>> shuffled, _ = sample_product_of_marginals(inputs, seed=gen)  # text keys share one permutation
    """
    is_dict = isinstance(modalities, dict)
    keys = list(modalities.keys()) if is_dict else list(range(len(modalities)))
    if groups is None:
        groups = default_groups(keys) if is_dict else [(k,) for k in keys]
    else:
        groups = _resolve_groups(groups, keys)
    if len(groups) < 2:
        raise ValueError(
            f"Need at least 2 modalities (permutation groups) to sample a product of marginals; got "
            f"{len(groups)}: {groups}."
        )
    if keep_first:  # the group holding the first key/element stays in place
        groups = sorted(groups, key=lambda g: keys[0] not in g)
    batch = ops.shape(modalities[keys[0]])[0]
    out, out_mask = {}, None
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        mask = mask if keras.backend.standardize_dtype(mask.dtype) == "bool" else mask > 0
    for i, group in enumerate(groups):
        if keep_first and i == 0:
            out.update({k: modalities[k] for k in group})
            perm_mask = mask
        else:
            perm = random_permutation(batch, seed=seed)
            out.update({k: ops.take(modalities[k], perm, axis=0) for k in group})
            perm_mask = None if mask is None else ops.take(mask, perm, axis=0)
        if perm_mask is not None:
            out_mask = perm_mask if out_mask is None else ops.logical_and(out_mask, perm_mask)
    if is_dict:
        return {k: out[k] for k in keys}, out_mask
    values = [out[k] for k in keys]
    return (tuple(values) if isinstance(modalities, tuple) else values), out_mask


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
