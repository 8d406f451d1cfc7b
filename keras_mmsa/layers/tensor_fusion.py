"""Tensor fusion: the flattened outer product of unimodal vectors, each extended with a constant 1."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class TensorFusion(keras.layers.Layer):
    """The tensor fusion of TFN: `z = flatten([h_1; 1] ⊗ [h_2; 1] ⊗ ... ⊗ [h_M; 1])`.

    Called on a list of `M >= 1` vectors `h_m` of shape `[B, d_m]`; returns `[B, prod(d_m + 1)]`. The appended
    1 keeps every lower-order term in the product: the result holds the unimodal vectors themselves, every
    bimodal product `h_i ⊗ h_j` and, for three modalities, the trimodal product (Zadeh et al. 2017, eq. 1–2).
    Element `(i_1, ..., i_M)` of the tensor, flattened in row-major order (last vector fastest), is
    `prod_m [h_m; 1][i_m]`. With one vector the result is `[h_1; 1]`.

    The layer has no weights; the learned part of TFN is the post-fusion network that reads `z`.

    Args:
        **kwargs: base layer arguments.

    Example:
    >>> fusion = TensorFusion()
    >>> z = fusion([keras.ops.ones((2, 4)), keras.ops.ones((2, 3)), keras.ops.ones((2, 2))])
    >>> z.shape  # (4 + 1) * (3 + 1) * (2 + 1)
    (2, 60)

    Reference:
        Zadeh, Chen, Poria, Cambria, Morency. "Tensor Fusion Network for Multimodal Sentiment Analysis".
        EMNLP 2017, §3.2 "Tensor Fusion Layer", eq. 1–2.
    """

    def call(self, inputs):
        inputs = list(inputs)
        if not inputs:
            raise ValueError("TensorFusion needs at least one vector")
        z = None
        size = 1
        for h in inputs:
            h = ops.convert_to_tensor(h, dtype=self.compute_dtype)
            one = ops.ones_like(h[:, :1])
            h = ops.concatenate([h, one], axis=-1)
            width = int(h.shape[-1])
            if z is None:
                z = h
            else:
                z = ops.reshape(z[:, :, None] * h[:, None, :], (-1, size * width))
            size *= width
        return z

    def compute_output_shape(self, input_shapes):
        size = 1
        for shape in input_shapes:
            size *= int(shape[-1]) + 1
        return (input_shapes[0][0], size)
