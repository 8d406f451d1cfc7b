import math

import keras
from keras import ops

from keras_mmsa.estimators import bounds

NORMALIZE_OVER = ("h", "prediction")


def l2_normalize(x, axis=-1, epsilon=1e-8):
    """x / max(‖x‖₂, ε): unit-length rows with a finite gradient at 0."""
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, epsilon * epsilon))


@keras.saving.register_keras_serializable(package="keras_mmsa")
class CPCPredictor(keras.layers.Layer):
    """MMIM's fusion-level CPC: a predictor G_φ(Z) of a modality representation h_m, scored by cosine.

    Ḡ = G_φ(Z) / ‖G_φ(Z)‖₂,  h̄ = h_m / ‖h_m‖₂,  s(h_m^j, Z^i) = exp(h̄^j · Ḡ^i)         (MMIM eq. 10)
    L_N = −(1/N) Σ_i log [ s(h_m^i, Z^i) / Σ_j s(h_m^j, Z^i) ]                          (MMIM eq. 11)

    Normalisation direction (`normalize_over`): eq. 11 normalises over the batch of h_m for each prediction
    G_φ(Z_i) — a softmax over the columns j of S[i, j] = h̄_j · Ḡ(Z_i) — which is the default, "h". The
    official MMIM code normalises the other way, over the predictions Ḡ(Z_j) for each h_m^i (a softmax over
    the rows of S, i.e. InfoNCE on Sᵀ); `normalize_over="prediction"` reproduces it. Both are InfoNCE
    bounds with the same positives; they differ in which side supplies the negatives.

    `call(z, h)` returns L_N, a non-negative cross-entropy; it equals log N − I_NCE, where I_NCE is the
    InfoNCE lower bound (`lower_bound`), so minimising L_N maximises the bound (same gradient as −I_NCE).
    MMIM's L_CPC (eq. 12) is the sum of L_N over the modalities; Self-MI's eq. 11–14 is the same quantity
    (its eq. 11–12 print ‖·‖² but state "Euclidean normalization to unit length", which is what is used).

    Call arguments: `call(z, h, sample_mask=None)` with z [B, x_dim], h [B, y_dim] and an optional validity
    mask [B] (N is then the number of valid rows).

    With cosine scores in [−1, 1] the bound can never exceed log N − log(1 + (N−1)e⁻²) (≈ 1.9 nats at N = 64),
    far below log N: the paper's form has no temperature (DESIGN §2 "Known defects"). `temperature=τ`
    divides the cosine by τ (SimCLR-style) and lifts that cap; the default None keeps the paper's form.

    Args:
        x_dim: int, dimension of the context Z (input of G_φ).
        y_dim: int, dimension of the predicted representation h_m.
        hidden_dims: sequence of ints, hidden widths of G_φ; empty (default) = one linear layer.
        activation: str, activation of G_φ's hidden layers (MMIM: tanh).
        temperature: float or None, the score temperature τ (None = the paper's exp(cos)).
        epsilon: float, norm floor of the L2 normalisation.
        normalize_over: "h" (MMIM eq. 11, default: negatives are the other h_m^j) or "prediction" (the
            official code: negatives are the other predictions G_φ(Z_j)).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> cpc = CPCPredictor(x_dim=16, y_dim=8)
    >>> z, h = keras.random.normal((32, 16)), keras.random.normal((32, 8))
    >>> loss = cpc(z, h)                      # L_N, MMIM eq. 11
    >>> s = cpc.positive_scores(z, h)         # s(h^i, Z^i) per sample, for tables like MMIM Table 5

    Reference: MMIM (Han et al., 2021) eq. 10–12; van den Oord et al. (2018); Self-MI (Nguyen et al., 2023)
    eq. 11–15.
    """

    def __init__(
        self,
        x_dim,
        y_dim,
        *,
        hidden_dims=(),
        activation="tanh",
        temperature=None,
        epsilon=1e-8,
        normalize_over="h",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalize_over not in NORMALIZE_OVER:
            raise ValueError(
                f"`normalize_over` must be one of {NORMALIZE_OVER}; got {normalize_over!r}."
            )
        if temperature is not None and temperature <= 0:
            raise ValueError(f"`temperature` must be positive or None; got {temperature}.")
        self.x_dim = int(x_dim)
        self.y_dim = int(y_dim)
        self.hidden_dims = tuple(int(d) for d in hidden_dims)
        self.activation = activation
        self.temperature = None if temperature is None else float(temperature)
        self.epsilon = float(epsilon)
        self.normalize_over = normalize_over
        self.predictor_layers = [
            keras.layers.Dense(d, activation=activation, name=f"hidden_{i}")
            for i, d in enumerate(self.hidden_dims)
        ]
        self.predictor_layers.append(keras.layers.Dense(self.y_dim, name="prediction"))

    def build(self, z_shape, h_shape=None):
        shape = tuple(z_shape)
        for layer in self.predictor_layers:
            if not layer.built:
                layer.build(shape)
            shape = shape[:-1] + (layer.units,)

    def _check(self, z, h):
        zs, hs = ops.shape(z), ops.shape(h)
        if len(zs) != 2 or len(hs) != 2 or zs[-1] != self.x_dim or hs[-1] != self.y_dim:
            raise ValueError(
                f"{self.name}: expected z [B, {self.x_dim}] and h [B, {self.y_dim}]; got {zs} and {hs}."
            )

    def predict_representation(self, z):
        """G_φ(Z): the (unnormalised) prediction of h_m, tensor [B, y_dim]."""
        out = z
        for layer in self.predictor_layers:
            out = layer(out)
        return out

    def _scores(self, z, h):
        self._check(z, h)
        g = l2_normalize(self.predict_representation(z), epsilon=self.epsilon)
        hn = l2_normalize(ops.cast(h, g.dtype), epsilon=self.epsilon)
        scores = ops.matmul(g, ops.transpose(hn))
        if self.temperature is not None:
            scores = scores / self.temperature
        return scores

    def score_matrix(self, z, h):
        """Log-scores `S[i, j] = h̄_j · Ḡ(Z_i) / τ` (τ = 1 by default): tensor [B, B], diagonal = positives."""
        return self(z, h, return_scores=True)

    def positive_scores(self, z, h):
        """s(h_m^i, Z^i) = exp(h̄_i · Ḡ(Z_i) / τ) per sample (MMIM eq. 10, Table 5): tensor [B]."""
        return ops.exp(ops.diagonal(self.score_matrix(z, h)))

    def _bound(self, scores, sample_mask):
        # infonce_lower_bound normalises each row over its columns; the masks are symmetric.
        if self.normalize_over == "prediction":
            scores = ops.transpose(scores)
        return bounds.infonce_lower_bound(scores=scores, mask=sample_mask)

    def lower_bound(self, z, h, sample_mask=None):
        """The InfoNCE lower bound I_NCE ≤ log N on I(Z; h_m), in nats (normalised as `normalize_over`)."""
        return self._bound(self.score_matrix(z, h), sample_mask)

    def call(self, z, h, sample_mask=None, return_scores=False):
        scores = self._scores(z, h)
        if return_scores:
            return scores
        bound = self._bound(scores, sample_mask)
        if sample_mask is None:
            n = ops.cast(ops.shape(scores)[0], scores.dtype)
        else:
            n = ops.sum(ops.cast(sample_mask, scores.dtype))
        return ops.log(ops.maximum(n, 1.0)) - bound

    def max_lower_bound(self, batch_size):
        """The largest I_NCE this predictor can report at `batch_size` (cosine scores ∈ [−1/τ, 1/τ])."""
        inv_t = 1.0 if self.temperature is None else 1.0 / self.temperature
        return math.log(batch_size) - math.log1p((batch_size - 1) * math.exp(-2.0 * inv_t))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "x_dim": self.x_dim,
                "y_dim": self.y_dim,
                "hidden_dims": list(self.hidden_dims),
                "activation": self.activation,
                "temperature": self.temperature,
                "epsilon": self.epsilon,
                "normalize_over": self.normalize_over,
            }
        )
        return config
