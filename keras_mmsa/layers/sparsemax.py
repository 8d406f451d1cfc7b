"""`Sparsemax`: the Euclidean projection of scores onto the probability simplex, with a mask."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class Sparsemax(keras.layers.Layer):
    """Sparsemax over the last axis, with an optional boolean mask of the positions allowed to get weight.

    For a score vector z `[K]`, sparsemax(z) = argmin_{p in simplex} ||p - z||^2 = max(z - tau, 0), where the
    threshold tau comes from the sorted scores z_(1) >= ... >= z_(K):

        k(z) = max{k : 1 + k z_(k) > sum_{j<=k} z_(j)}     (the support size)
        tau  = (sum_{j<=k(z)} z_(j) - 1) / k(z)

    so the output sums to 1, is exactly zero outside the support and, unlike softmax, can be sparse. Its
    Jacobian on the support S is diag(s) - s s^T / |S| (s the support indicator): the threshold is found
    without gradient (a sort) and then recomputed differentiably as the mean over the fixed support, which gives
    exactly that Jacobian and never differentiates through the sort.

    Masking (no silent NaN): masked positions are replaced by (smallest unmasked score - 1), which the
    threshold provably excludes (tau >= max z - 1), then the output is multiplied by the mask. A row with no
    unmasked position returns all zeros (not a distribution): callers that pool over it must handle that.

    Call arguments: `inputs` `[..., K]` scores and `mask` (optional, bool or 0/1 `[..., K]`, broadcastable).

    Args:
        **kwargs: base layer arguments.

    Example:
    >>> Sparsemax()(ops.convert_to_tensor([[2.0, 1.0, -1.0]])).numpy().tolist()
    [[1.0, 0.0, 0.0]]

    Reference:
        Martins, Astudillo. "From Softmax to Sparsemax: A Sparse Model of Attention and Multi-Label
        Classification". ICML 2016, Algorithm 1 and Proposition 2 (the Jacobian); used by MIRD's WSA-BERT
        (Qian et al., eq. 3).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        z = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if mask is not None:
            valid = ops.cast(ops.broadcast_to(ops.cast(mask, "bool"), ops.shape(z)), z.dtype)
            big = ops.cast(3.0e38 if z.dtype == "float32" else 6.0e4, z.dtype)
            smallest = ops.min(ops.where(valid > 0, z, big), axis=-1, keepdims=True)
            smallest = ops.where(smallest >= big, ops.zeros_like(smallest), smallest)
            z = ops.where(valid > 0, z, smallest - 1.0)
        # Shift by the row maximum for numerical range (sparsemax is shift-invariant).
        z = z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True))
        zs = ops.stop_gradient(z)
        z_sorted = ops.flip(ops.sort(zs, axis=-1), axis=-1)
        k = ops.cast(ops.arange(1, ops.shape(z)[-1] + 1), z.dtype)
        cumsum = ops.cumsum(z_sorted, axis=-1)
        in_support = ops.cast(1.0 + k * z_sorted > cumsum, z.dtype)
        k_z = ops.sum(in_support, axis=-1, keepdims=True)
        tau_fixed = (ops.sum(in_support * z_sorted, axis=-1, keepdims=True) - 1.0) / k_z
        support = ops.stop_gradient(ops.cast(zs > tau_fixed, z.dtype))
        support_size = ops.maximum(ops.sum(support, axis=-1, keepdims=True), 1.0)
        tau = (ops.sum(support * z, axis=-1, keepdims=True) - 1.0) / support_size
        out = ops.relu(z - tau)
        if mask is not None:
            out = out * valid
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return None
