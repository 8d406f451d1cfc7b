"""`WordWiseSparseAttention`: WSA, the nonverbal injection of MIRD's WSA-BERT."""

import keras
from keras import ops

from keras_mmsa.layers.multimodal_adaptation_gate import _safe_norm
from keras_mmsa.layers.sparsemax import Sparsemax


@keras.saving.register_keras_serializable(package="keras_mmsa")
class WordWiseSparseAttention(keras.layers.Layer):
    """Word-wise sparse attention (WSA): each word state attends over ALL frames of each nonverbal sequence with
    a masked sparsemax, and the attended features shift the word through adaptive gates (MIRD eq. 2-6).

    For word states W `[T_L, d_w]` and a nonverbal sequence X^m `[T_m, d_m]` (m = audio, vision; any number):

        S^m   = (W Q_m)(X^m K_m)^T                         (similarity: FC layers + inner product)
        X~^m  = Sparsemax(S^m, frame mask) X^m             (eq. 2; `[T_L, d_m]`)
        G^m   = sigmoid(F_m [W; X~^m])                     (eq. 3, adaptive gates)
        H     = sum_m G^m * D_m(X~^m)                      (eq. 4, displacement)
        lam_k = min(||w_k|| / ||h_k|| * epsilon, 1)        (eq. 6)
        W~    = W + diag(lam) H                            (eq. 5)

    The paper says the word is an anchor searching "holistic non-verbal sequences", so WSA does NOT need
    word-aligned input: T_m may differ from T_L, and padding frames (frame mask False) get exactly zero weight.
    Unlike MAG, eq. 5 has no layer norm or dropout; `layer_norm=True` adds MAG's LayerNorm (the cheap
    alternative). A zero displacement gives lam * H = 0 (its norm is taken as 1, as in MAG, no NaN).

    Call arguments: `text` `[B, T_L, d_w]`, `others` a list of `[B, T_m, d_m]`, `masks` an optional list of
    `[B, T_m]` frame masks (bool/0-1), one per entry of `others`; returns `[B, T_L, d_w]`.

    Args:
        attention_dim: width of the common space of the similarity function.
        epsilon: the scaling hyper-parameter of eq. 6 (MAG's beta_shift).
        layer_norm: apply a LayerNorm after the shift (MAG's form); False follows eq. 5.
        **kwargs: base layer arguments.

    Example:
    >>> wsa = WordWiseSparseAttention(attention_dim=4)
    >>> w = keras.random.normal((2, 6, 8))
    >>> wsa(w, [keras.random.normal((2, 9, 5)), keras.random.normal((2, 7, 3))]).shape
    (2, 6, 8)

    Reference:
        Qian et al. "MIRD", §3.3, eq. 2-6 (WSA-BERT, after their earlier WSA-BERT paper); Martins & Astudillo,
        ICML 2016 (sparsemax); Rahman et al., ACL 2020 (the gate it extends).
    """

    def __init__(self, attention_dim=32, epsilon=1.0, layer_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.attention_dim = attention_dim
        self.epsilon = epsilon
        self.layer_norm = layer_norm
        self.sparsemax = Sparsemax(dtype=self.dtype_policy)
        self.norm = (
            keras.layers.LayerNormalization(
                epsilon=1e-5, dtype=self.dtype_policy, name="layer_norm"
            )
            if layer_norm
            else None
        )
        self.queries, self.keys, self.gates, self.displacements = [], [], [], []

    def build(self, text_shape, others_shape, masks_shape=None):
        if not isinstance(others_shape, (list, tuple)) or not others_shape:
            raise ValueError(
                "WordWiseSparseAttention takes a non-empty list of nonverbal sequences [B, T_m, D_m]"
            )
        hidden = text_shape[-1]

        def dense(units, name, in_dim, activation=None):
            layer = keras.layers.Dense(
                units, activation=activation, dtype=self.dtype_policy, name=name
            )
            layer.build((None, in_dim))
            return layer

        for i, shape in enumerate(others_shape):
            self.queries.append(dense(self.attention_dim, f"query_{i}", hidden))
            self.keys.append(dense(self.attention_dim, f"key_{i}", shape[-1]))
            self.gates.append(dense(hidden, f"gate_{i}", hidden + shape[-1], "sigmoid"))
            self.displacements.append(dense(hidden, f"displacement_{i}", shape[-1]))
        if self.norm is not None:
            self.norm.build(text_shape)
        self.built = True

    def attention(self, text, others, masks=None):
        """The sparse attention weights, a list of `[B, T_L, T_m]` (rows sum to 1 over unmasked frames)."""
        if len(others) != len(self.keys):
            raise ValueError(
                f"WordWiseSparseAttention was built for {len(self.keys)} nonverbal inputs; got {len(others)}"
            )
        if masks is not None and len(masks) != len(others):
            raise ValueError(
                f"WordWiseSparseAttention: `masks` must have one [B, T_m] mask per nonverbal input "
                f"({len(others)}); got {len(masks)}"
            )
        w = ops.convert_to_tensor(text, dtype=self.compute_dtype)
        weights = []
        for i, x in enumerate(others):
            x = ops.convert_to_tensor(x, dtype=self.compute_dtype)
            scores = ops.einsum("bld,btd->blt", self.queries[i](w), self.keys[i](x))
            mask = None if masks is None else ops.cast(masks[i], "bool")[:, None, :]
            weights.append(self.sparsemax(scores, mask=mask))
        return weights

    def call(self, text, others, masks=None):
        w = ops.convert_to_tensor(text, dtype=self.compute_dtype)
        displacement = 0.0
        for i, (x, a) in enumerate(zip(others, self.attention(w, others, masks))):
            attended = ops.einsum("blt,btd->bld", a, ops.convert_to_tensor(x, self.compute_dtype))
            gate = self.gates[i](ops.concatenate([w, attended], axis=-1))
            displacement = displacement + gate * self.displacements[i](attended)
        h_norm = _safe_norm(displacement, zero_value=1.0)
        w_norm = _safe_norm(w, zero_value=0.0)
        lam = ops.minimum(w_norm / h_norm * self.epsilon, 1.0)
        out = w + lam[..., None] * displacement
        return self.norm(out) if self.norm is not None else out

    def compute_output_shape(self, text_shape, others_shape=None, masks_shape=None):
        return text_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "attention_dim": self.attention_dim,
                "epsilon": self.epsilon,
                "layer_norm": self.layer_norm,
            }
        )
        return config
