"""Low-rank multimodal fusion (LMF): tensor fusion computed through modality-specific low-rank factors."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class LowRankFusion(keras.layers.Layer):
    """Fuses M unimodal vectors as `h = sum_i w_i prod_m (W_m^(i) [z_m; 1]) + b` (Liu et al. 2018, eq. 5-7).

    Each unimodal vector `z_m` `[B, d_m]` gets a 1 appended and is projected by `rank` modality-specific factors
    `W_m^(i)` `[d_m + 1, output_dim]`; the projections are multiplied element-wise over the modalities, and the
    `rank` products are combined with the fusion weights `w` `[rank]` plus a bias `b` `[output_dim]`. This equals
    the tensor-fusion product `W . ([z_1; 1] x ... x [z_M; 1])` (TFN's outer product, Zadeh et al. 2017) for the
    weight tensor of CP rank `rank` that the factors describe, without ever forming the outer product: the cost
    is linear in the number of modalities. The weighted sum over the rank (instead of the paper's plain sum,
    w = 1) is the reference implementation's.

    Called on a list of `[B, d_m]` tensors (any number, one included); returns `[B, output_dim]`.
    `rank_products(inputs)` gives the `rank` products before the weighted sum, `[B, rank, output_dim]`, and
    `combine(products)` the weighted sum plus bias, so `call` = `combine(rank_products(inputs))`.

    Args:
        output_dim: size of the fused vector h.
        rank: number of low-rank factors per modality.
        factor_initializer: initializer of the factors `[rank, d_m + 1, output_dim]`. Default (None):
            normal with std `sqrt(2 / (output_dim * (d_m + 1 + rank)))`, the Xavier-normal fans PyTorch
            computes for that shape (the reference implementation's initialisation).
        fusion_weights_initializer: initializer of the fusion weights, stored as `[1, rank]`.
        bias_initializer: initializer of the bias `[output_dim]`.
        **kwargs: base layer arguments.

    Example:
    >>> fusion = LowRankFusion(output_dim=2, rank=4)
    >>> h = fusion([keras.ops.ones((3, 8)), keras.ops.ones((3, 5)), keras.ops.ones((3, 6))])
    >>> h.shape
    (3, 2)

    Reference:
        Liu, Shen, Lakshminarasimhan, Liang, Zadeh, Morency. "Efficient Low-rank Multimodal Fusion with
        Modality-Specific Factors". ACL 2018, §3.2-3.3, eq. 5-7.
    """

    def __init__(
        self,
        output_dim=1,
        rank=4,
        factor_initializer=None,
        fusion_weights_initializer="glorot_normal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(rank) < 1 or int(output_dim) < 1:
            raise ValueError(f"rank and output_dim must be >= 1; got {rank}, {output_dim}")
        self.output_dim = int(output_dim)
        self.rank = int(rank)
        self.factor_initializer = (
            None if factor_initializer is None else keras.initializers.get(factor_initializer)
        )
        self.fusion_weights_initializer = keras.initializers.get(fusion_weights_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or not input_shapes:
            raise ValueError(
                f"LowRankFusion is called on a list of [B, d] tensors; got {input_shapes}"
            )
        if not isinstance(input_shapes[0], (list, tuple)):
            input_shapes = [input_shapes]  # a single [B, d] shape
        self.factors = []
        for i, shape in enumerate(input_shapes):
            width = int(shape[-1]) + 1
            initializer = self.factor_initializer or keras.initializers.RandomNormal(
                stddev=math.sqrt(2.0 / (self.output_dim * (width + self.rank)))
            )
            self.factors.append(
                self.add_weight(
                    shape=(self.rank, width, self.output_dim),
                    initializer=initializer,
                    name=f"factor_{i}",
                )
            )
        self.fusion_weights = self.add_weight(
            shape=(1, self.rank), initializer=self.fusion_weights_initializer, name="fusion_weights"
        )
        self.bias = self.add_weight(
            shape=(self.output_dim,), initializer=self.bias_initializer, name="bias"
        )
        self.built = True

    def call(self, inputs):
        return self.combine(self.rank_products(inputs))

    def rank_products(self, inputs):
        """`prod_m (W_m^(i) [z_m; 1])` for every rank i: `[B, rank, output_dim]`."""
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(inputs) != len(self.factors):
            raise ValueError(
                f"LowRankFusion was built for {len(self.factors)} inputs; called on {len(inputs)}"
            )
        product = None
        for z, factor in zip(inputs, self.factors):
            z = ops.convert_to_tensor(z, dtype=self.compute_dtype)
            z = ops.concatenate([z, ops.ones_like(z[:, :1])], axis=-1)
            projected = ops.einsum("bd,rdk->brk", z, ops.cast(factor, self.compute_dtype))
            product = projected if product is None else product * projected
        return product

    def combine(self, products):
        """The fusion-weighted sum over the rank plus the bias: `[B, rank, output_dim]` -> `[B, output_dim]`."""
        weights = ops.cast(self.fusion_weights[0], products.dtype)
        return ops.einsum("r,brk->bk", weights, products) + ops.cast(self.bias, products.dtype)

    def compute_output_shape(self, input_shapes):
        if not isinstance(input_shapes[0], (list, tuple)):
            input_shapes = [input_shapes]
        return (input_shapes[0][0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "rank": self.rank,
                "factor_initializer": None
                if self.factor_initializer is None
                else keras.initializers.serialize(self.factor_initializer),
                "fusion_weights_initializer": keras.initializers.serialize(
                    self.fusion_weights_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
