import keras
from keras import ops

from keras_mmsa.estimators import gaussian
from keras_mmsa.estimators.bounds import masked_mean


@keras.saving.register_keras_serializable(package="keras_mmsa")
class GaussianConditional(keras.layers.Layer):
    """A diagonal-Gaussian variational conditional q(y|x) = N(y; μ(x), diag σ²(x)).

    Two small MLPs map x to the mean μ(x) and to the log-variance log σ²(x) (MMIM's predictor q of eq. 3–4;
    the variational net of CLUB, MIRD eq. 12–15). The log-variance is bounded smoothly,
    log σ² = b · tanh(raw / b) with b = `logvar_bound`: slope 1 near 0 and |log σ²| < b, so σ² can neither
    collapse to 0 nor drift to infinity (b = 1 is exactly the `Tanh` of the CLUB reference networks; `None`
    leaves it unbounded).

    `log_likelihood` is the full Gaussian log-density
    log q(y|x) = Σ_d [−(μ_d − y_d)² / (2σ_d²) − ½ log σ_d² − ½ log 2π].
    MMIM's official code uses Σ_d −(μ_d − y_d)² / (2 exp(log σ_d²)) instead — no −½ log σ² term, so
    maximising it pushes log σ² upward without limit and the bound to 0 (DESIGN §2 "Known defects");
    `variance_free=True` reproduces that reference behaviour for comparison only.

    Args:
        y_dim: int, dimension of y.
        hidden_dim: int, width of the hidden layer of both MLPs (x → hidden → y_dim).
        activation: str or callable, hidden activation (MMIM and CLUB use ReLU).
        logvar_bound: float or None, the bound b on |log σ²| (default 10: σ ∈ [0.0067, 148]).
        variance_free: bool, reproduce MMIM's official variance-free likelihood (a known defect).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> q = GaussianConditional(y_dim=4, hidden_dim=16)
    >>> x, y = keras.random.normal((8, 6)), keras.random.normal((8, 4))
    >>> mu, logvar = q(x)
    >>> nll = -ops.mean(q.log_likelihood(x, y))  # stage-1 loss, MMIM eq. 4 / MIRD eq. 13

    Reference: Barber & Agakov (2004); MMIM (Han et al., 2021) eq. 3–4; CLUB (Cheng et al., 2020) §3;
    MIRD (Qian et al.) eq. 12–15.
    """

    def __init__(
        self,
        y_dim,
        hidden_dim,
        *,
        activation="relu",
        logvar_bound=10.0,
        variance_free=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if logvar_bound is not None and logvar_bound <= 0:
            raise ValueError(f"`logvar_bound` must be positive or None; got {logvar_bound}.")
        self.y_dim = int(y_dim)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation
        self.logvar_bound = None if logvar_bound is None else float(logvar_bound)
        self.variance_free = bool(variance_free)
        self.mu_hidden = keras.layers.Dense(
            self.hidden_dim, activation=activation, name="mu_hidden"
        )
        self.mu_out = keras.layers.Dense(self.y_dim, name="mu_out")
        self.logvar_hidden = keras.layers.Dense(
            self.hidden_dim, activation=activation, name="logvar_hidden"
        )
        self.logvar_out = keras.layers.Dense(self.y_dim, name="logvar_out")

    def build(self, x_shape):
        hidden_shape = tuple(x_shape[:-1]) + (self.hidden_dim,)
        for layer, shape in (
            (self.mu_hidden, x_shape),
            (self.mu_out, hidden_shape),
            (self.logvar_hidden, x_shape),
            (self.logvar_out, hidden_shape),
        ):
            if not layer.built:
                layer.build(shape)

    def call(self, x):
        mu = self.mu_out(self.mu_hidden(x))
        raw = self.logvar_out(self.logvar_hidden(x))
        if self.logvar_bound is None:
            return mu, raw
        b = self.logvar_bound
        return mu, b * ops.tanh(raw / b)

    def _check(self, x, y):
        if len(ops.shape(y)) < 2 or (
            ops.shape(y)[-1] is not None and ops.shape(y)[-1] != self.y_dim
        ):
            raise ValueError(
                f"{self.name}: expected y of shape [B, {self.y_dim}]; got {ops.shape(y)} (x: {ops.shape(x)})."
            )

    def log_likelihood(self, x, y):
        """log q(y_i|x_i) for each row: tensor [B]."""
        self._check(x, y)
        mu, logvar = self(x)
        return gaussian.gaussian_log_likelihood(
            y=y, mean=mu, logvar=logvar, variance_free=self.variance_free
        )

    def log_likelihood_matrix(self, x, y):
        """All pairs `L[i, j] = log q(y_j|x_i)`: tensor [B_x, B_y] (input of `club_upper_bound`)."""
        self._check(x, y)
        mu, logvar = self(x)
        return gaussian.gaussian_log_likelihood_matrix(
            y=y, mean=mu, logvar=logvar, variance_free=self.variance_free
        )

    def nll_loss(self, x, y, sample_mask=None):
        """The likelihood-fitting loss −(1/N) Σ_i log q(y_i|x_i) (MMIM eq. 4, MIRD eq. 13/15), masked mean."""
        return -masked_mean(self.log_likelihood(x, y), mask=sample_mask)

    def compute_output_shape(self, x_shape):
        out = tuple(x_shape[:-1]) + (self.y_dim,)
        return out, out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "y_dim": self.y_dim,
                "hidden_dim": self.hidden_dim,
                "activation": self.activation
                if isinstance(self.activation, str)
                else keras.activations.serialize(self.activation),
                "logvar_bound": self.logvar_bound,
                "variance_free": self.variance_free,
            }
        )
        return config
