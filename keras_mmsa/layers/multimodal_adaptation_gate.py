"""`MultimodalAdaptationGate`: MAG, the per-token nonverbal shift of a transformer's hidden states."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MultimodalAdaptationGate(keras.layers.Layer):
    """The Multimodal Adaptation Gate (MAG) of MAG-BERT / MAG-XLNet: shifts each token's hidden state by a
    gated displacement computed from the nonverbal features aligned with that token.

    For a token state z `[H]` and its aligned nonverbal vectors x_m (m = audio, vision; any number >= 1):

        g_m   = ReLU(W_gm [x_m; z] + b_gm)                      (the gates)
        H     = sum_m g_m * (W_m x_m + b_m)                     (the nonverbal displacement)
        alpha = min(||z||_2 / (||H||_2 + eps) * beta_shift, 1)  (its scaling)
        z'    = Dropout(LayerNorm(z + alpha * H))

    so the shift never exceeds `beta_shift` times the norm of the state it moves. The displacement carries one
    bias per modality (`b_m`, as the reference code's `W_v`/`W_a` layers do; the paper writes one `b_H`).

    Zero norms (no silent NaN): where H is exactly zero its norm is taken as 1 (the reference code's rule; then
    alpha * H = 0 whatever alpha), and both norms are square roots of sums of squares guarded so that a zero
    vector has a zero (finite) gradient, where the plain `norm` would give 0/0 = NaN gradients.

    Call arguments: `text` `[B, L, H]` and `others`, a list of `[B, L, D_m]` (one frame per token position);
    returns `[B, L, H]`. The layer is per position: padding positions are shifted too and are left to the
    transformer's attention mask.

    Args:
        beta_shift: the scaling threshold beta (MMSA's and the paper's `beta_shift`).
        dropout: dropout rate after the layer norm (MMSA's `dropout_prob`).
        epsilon: added to ||H|| in the ratio (the reference code's 1e-6).
        layer_norm_epsilon: epsilon of the layer norm (PyTorch's `nn.LayerNorm` default 1e-5, as the reference).
        **kwargs: base layer arguments.

    Example:
    >>> gate = MultimodalAdaptationGate(beta_shift=1.0)
    >>> z = keras.random.normal((2, 6, 8))
    >>> gate(z, [keras.random.normal((2, 6, 5)), keras.random.normal((2, 6, 20))]).shape
    (2, 6, 8)

    Reference:
        Rahman, Hasan, Lee, Zadeh, Mao, Morency, Hoque. "Integrating Multimodal Information in Large
        Pretrained Transformers". ACL 2020, §3 (the gate, displacement and scaling equations); the reference
        code's `MAG` module
        (WasifurRahman/BERT_multimodal_transformer `modeling.py`, MMSA `BERT_MAG.py`).
    """

    def __init__(
        self, beta_shift=1.0, dropout=0.5, epsilon=1e-6, layer_norm_epsilon=1e-5, **kwargs
    ):
        super().__init__(**kwargs)
        self.beta_shift = beta_shift
        self.dropout = dropout
        self.epsilon = epsilon
        self.layer_norm_epsilon = layer_norm_epsilon
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.gates = []
        self.projections = []

    def build(self, text_shape, others_shape):
        if not isinstance(others_shape, (list, tuple)) or not others_shape:
            raise ValueError(
                "MultimodalAdaptationGate takes a non-empty list of nonverbal sequences [B, L, D_m]"
            )
        hidden = text_shape[-1]
        for i, shape in enumerate(others_shape):
            gate = keras.layers.Dense(hidden, dtype=self.dtype_policy, name=f"gate_{i}")
            gate.build((None, shape[-1] + hidden))
            projection = keras.layers.Dense(hidden, dtype=self.dtype_policy, name=f"projection_{i}")
            projection.build((None, shape[-1]))
            self.gates.append(gate)
            self.projections.append(projection)
        self.layer_norm.build(text_shape)
        self.built = True

    def shift(self, text, others):
        """`(H, alpha)`: the displacement `[B, L, H]` and its scale `[B, L]`."""
        if len(others) != len(self.gates):
            raise ValueError(
                f"MultimodalAdaptationGate was built for {len(self.gates)} nonverbal inputs; got {len(others)}"
            )
        z = ops.convert_to_tensor(text, dtype=self.compute_dtype)
        displacement = 0.0
        for x, gate, projection in zip(others, self.gates, self.projections):
            x = ops.convert_to_tensor(x, dtype=self.compute_dtype)
            g = ops.relu(gate(ops.concatenate([x, z], axis=-1)))
            displacement = displacement + g * projection(x)
        h_norm = _safe_norm(displacement, zero_value=1.0)
        z_norm = _safe_norm(z, zero_value=0.0)
        alpha = ops.minimum(z_norm / (h_norm + self.epsilon) * self.beta_shift, 1.0)
        return displacement, alpha

    def call(self, text, others, training=None):
        displacement, alpha = self.shift(text, others)
        z = ops.convert_to_tensor(text, dtype=self.compute_dtype)
        out = self.layer_norm(z + alpha[..., None] * displacement)
        return self.dropout_layer(out, training=training)

    def compute_output_shape(self, text_shape, others_shape=None):
        return text_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_shift": self.beta_shift,
                "dropout": self.dropout,
                "epsilon": self.epsilon,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


def _safe_norm(x, zero_value):
    """The L2 norm over the last axis, `zero_value` where the vector is exactly zero, with finite gradients
    there (the square root only ever sees positive values)."""
    squares = ops.sum(ops.square(x), axis=-1)
    positive = squares > 0
    root = ops.sqrt(ops.where(positive, squares, ops.ones_like(squares)))
    return ops.where(positive, root, ops.full_like(squares, zero_value))
