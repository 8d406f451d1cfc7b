import keras
from keras import ops

from keras_mmsa.estimators import bounds
from keras_mmsa.estimators.gaussian_conditional import GaussianConditional
from keras_mmsa.estimators.multivariate import derangement, random_permutation


@keras.saving.register_keras_serializable(package="keras_mmsa")
class CLUB(keras.layers.Layer):
    """Contrastive log-ratio upper bound of I(x; y) with a Gaussian variational net q(y|x).

    CLUB:        Î = (1/N) Σ_i log q(y_i|x_i) − (1/N²) Σ_i Σ_j log q(y_j|x_i)   (MIRD eq. 12, 14)
    CLUB-sample: Î = (1/N) Σ_i [log q(y_i|x_i) − log q(y_σ(i)|x_i)], σ a seeded random permutation.

    Training alternates (MIRD Algorithm 1): fit q by `learning_loss` (−mean log q, MIRD eq. 13/15) on the
    q variables, then minimise `call(x, y)` w.r.t. the encoders that produce x and y. Negatives are built
    from the samples y_j (the MMIM repository's unused `CLUB` class built them from μ — not a reference).

    Call arguments: `call(x, y, sample_mask=None)` → the estimate (scalar); `sample_mask` [B] marks valid rows.

    Args:
        y_dim: int, dimension of y.
        hidden_dim: int, hidden width of q's μ and log σ² MLPs.
        sample: bool, CLUB-sample instead of the all-pairs CLUB.
        no_fixed_point: bool, CLUB-sample draws σ without fixed points (`derangement`); the reference uses a
            plain random permutation (default False).
        seed: int or None, seed of the layer's `keras.random.SeedGenerator` (CLUB-sample only).
        activation, logvar_bound, variance_free: passed to `GaussianConditional`.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> club = CLUB(y_dim=4, hidden_dim=8)
    >>> x, y = keras.random.normal((16, 3)), keras.random.normal((16, 4))
    >>> q_loss = club.learning_loss(x, y)   # step 1: fit q
    >>> mi_upper = club(x, y)               # step 2: minimise w.r.t. the encoders

    Reference: Cheng et al. (2020), "CLUB: A Contrastive Log-ratio Upper Bound of Mutual Information",
    eq. 4–8; MIRD (Qian et al.) eq. 10–15.
    """

    def __init__(
        self,
        y_dim,
        hidden_dim,
        *,
        sample=False,
        no_fixed_point=False,
        seed=None,
        activation="relu",
        logvar_bound=10.0,
        variance_free=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.y_dim = int(y_dim)
        self.hidden_dim = int(hidden_dim)
        self.sample = bool(sample)
        self.no_fixed_point = bool(no_fixed_point)
        self.seed = seed
        self.activation = activation
        self.logvar_bound = logvar_bound
        self.variance_free = bool(variance_free)
        self.conditional = GaussianConditional(
            y_dim=self.y_dim,
            hidden_dim=self.hidden_dim,
            activation=activation,
            logvar_bound=logvar_bound,
            variance_free=variance_free,
            name="conditional",
        )
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, x_shape, y_shape=None):
        if not self.conditional.built:
            self.conditional.build(x_shape)

    def call(self, x, y, sample_mask=None):
        if not self.sample:
            return bounds.club_upper_bound(
                log_likelihood_matrix=self.conditional.log_likelihood_matrix(x, y), mask=sample_mask
            )
        n = ops.shape(y)[0]
        draw = derangement if self.no_fixed_point else random_permutation
        perm = draw(n, seed=self.seed_generator)
        y_neg = ops.take(y, perm, axis=0)
        neg_mask = None
        if sample_mask is not None:
            valid = ops.cast(sample_mask, "bool")
            neg_mask = ops.logical_and(valid, ops.take(valid, perm, axis=0))
        return bounds.club_sample_upper_bound(
            log_likelihood=self.conditional.log_likelihood(x, y),
            shuffled_log_likelihood=self.conditional.log_likelihood(x, y_neg),
            mask=neg_mask,
        )

    def learning_loss(self, x, y, sample_mask=None):
        """−(1/N) Σ_i log q(y_i|x_i): the loss that fits q (MIRD eq. 13, 15)."""
        return self.conditional.nll_loss(x, y, sample_mask=sample_mask)

    def compute_output_shape(self, x_shape, y_shape=None):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "y_dim": self.y_dim,
                "hidden_dim": self.hidden_dim,
                "sample": self.sample,
                "no_fixed_point": self.no_fixed_point,
                "seed": self.seed,
                "activation": self.activation
                if isinstance(self.activation, str)
                else keras.activations.serialize(self.activation),
                "logvar_bound": self.logvar_bound,
                "variance_free": self.variance_free,
            }
        )
        return config
