import keras
from keras import ops

from keras_mmsa.estimators import bounds
from keras_mmsa.estimators.input_gradients import input_gradients

LIPSCHITZ_OPTIONS = (None, "spectral", "gradient_penalty")


def pairwise_concat(x, y):
    """All pairs `[x_i, y_j]`: tensor [B_x, B_y, D_x + D_y] (input of a concatenation critic's score matrix)."""
    bx, by = ops.shape(x)[0], ops.shape(y)[0]
    xx = ops.broadcast_to(ops.expand_dims(x, 1), (bx, by, ops.shape(x)[-1]))
    yy = ops.broadcast_to(ops.expand_dims(y, 0), (bx, by, ops.shape(y)[-1]))
    return ops.concatenate([xx, ops.cast(yy, xx.dtype)], axis=-1)


@keras.saving.register_keras_serializable(package="keras_mmsa")
class StatisticNetwork(keras.layers.Layer):
    """The statistic network (critic) T_θ of MINE-style dependency measures, after MDM's App. Table 4.

    T_θ maps a representation (MDM: the fused Z of the joint batch, or of the batch with independently
    permuted modalities) to one score. Default architecture for input dimension d (MDM Table 4):
    Dense(d/2) → Dense(d) → Dense(d) → Dense(d/4) → Dense(d/4), each LeakyReLU then Dropout(0.4),
    then Dense(1) with a sigmoid output. A list of tensors is concatenated on the last axis first, so
    `T([x, y])` is a concatenation critic for two variables and `score_matrix(x, y)` scores all pairs.

    The sigmoid output of Table 4 keeps T in (0, 1), which caps what the bounds can report (DV ≤ 1 nat,
    NWJ ≤ 1 − e⁻¹): fine as a training signal (MDM uses it as a penalty), wrong for measuring MI — use
    `output_activation=None` (a linear output) for estimation.

    Lipschitz option (for the Wasserstein measure, MDM eq. 8, which requires a 1-Lipschitz T):
    * "spectral": every Dense is wrapped in `keras.layers.SpectralNormalization` (its weight matrix has
      spectral norm ≈ 1, estimated by power iteration during training). LeakyReLU and sigmoid are
      1-Lipschitz, so T is 1-Lipschitz in inference mode; training-mode dropout rescales activations by
      1/(1−p) and breaks the guarantee, so set `dropout=0` when the constraint must hold during training.
    * "gradient_penalty": no architectural change; the method's critic-stage loss adds
      `lipschitz_penalty(joint, marginal)` = λ·E[(‖∇_x̂ T(x̂)‖₂ − 1)²] (WGAN-GP, Gulrajani et al., 2017, eq. 3,
      λ = `gradient_penalty_weight`, 10 as in the paper) at random interpolates x̂ = u·x_joint + (1−u)·x_marginal
      between joint and product-of-marginal samples. The default is the two-sided penalty of WGAN-GP;
      `one_sided_penalty=True` penalises only ‖∇T‖ > 1 (Petzka et al., 2018), which is exactly the
      1-Lipschitz constraint and does not push the slope up where T is flatter. The interpolates are
      held constant (`stop_gradient`), so the penalty trains T only, never the encoders that produce its
      inputs. `lipschitz_penalty` is 0 for the other options; `gradient_penalty` computes the unweighted
      penalty for any critic.

    Args:
        input_dim: int, the dimension d of T's input (after concatenation).
        hidden_dims: sequence of ints or None (None = Table 4: d/2, d, d, d/4, d/4, each at least 1).
        dropout: float, dropout rate after each hidden layer (Table 4: 0.4).
        negative_slope: float, LeakyReLU slope (0.01: PyTorch's default, which MINE and MDM use).
        output_activation: str or None, "sigmoid" (Table 4), None/"linear" (unbounded), or any Keras name.
        lipschitz: None, "spectral" or "gradient_penalty".
        power_iterations: int, power-iteration steps per call of the spectral normalisation.
        gradient_penalty_weight: float, λ of `lipschitz_penalty` (WGAN-GP: 10).
        one_sided_penalty: bool, the one-sided penalty E[max(0, ‖∇T‖ − 1)²] instead of the two-sided one.
        seed: int or None, seed of the interpolation draws (a `keras.random.SeedGenerator`, created with
            `lipschitz="gradient_penalty"` only).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> T = StatisticNetwork(input_dim=12)
    >>> z, z_marginal = keras.random.normal((32, 12)), keras.random.normal((32, 12))
    >>> joint, marginal = T(z), T(z_marginal)                    # [32], [32]
    >>> critic = StatisticNetwork(input_dim=8, hidden_dims=[15], dropout=0.0, output_activation=None)
    >>> scores = critic.score_matrix(keras.random.normal((16, 4)), keras.random.normal((16, 4)))  # [16, 16]
    >>> W = StatisticNetwork(input_dim=12, dropout=0.0, output_activation=None, lipschitz="gradient_penalty")
    >>> critic_loss = -(ops.mean(W(z)) - ops.mean(W(z_marginal))) + W.lipschitz_penalty(z, z_marginal)

    Reference: MDM (Colombo et al., 2021) App. Table 4, eq. 6–8; MINE (Belghazi et al., 2018);
    Miyato et al. (2018), spectral normalisation; Gulrajani et al. (2017), gradient penalty.
    """

    def __init__(
        self,
        input_dim,
        *,
        hidden_dims=None,
        dropout=0.4,
        negative_slope=0.01,
        output_activation="sigmoid",
        lipschitz=None,
        power_iterations=1,
        gradient_penalty_weight=10.0,
        one_sided_penalty=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if lipschitz not in LIPSCHITZ_OPTIONS:
            raise ValueError(f"`lipschitz` must be one of {LIPSCHITZ_OPTIONS}; got {lipschitz!r}.")
        self.input_dim = int(input_dim)
        if hidden_dims is None:
            d = self.input_dim
            hidden_dims = [max(1, d // 2), d, d, max(1, d // 4), max(1, d // 4)]
        self.hidden_dims = [int(h) for h in hidden_dims]
        self.dropout = float(dropout)
        self.negative_slope = float(negative_slope)
        self.output_activation = (
            None if output_activation in (None, "linear") else output_activation
        )
        self.lipschitz = lipschitz
        self.power_iterations = int(power_iterations)
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.one_sided_penalty = bool(one_sided_penalty)
        self.seed = seed
        self.seed_generator = (
            keras.random.SeedGenerator(seed, name="interpolation_seed")
            if lipschitz == "gradient_penalty"
            else None
        )

        def dense(units, name):
            layer = keras.layers.Dense(units, name=name)
            if lipschitz == "spectral":
                layer = keras.layers.SpectralNormalization(
                    layer, power_iterations=self.power_iterations, name=f"{name}_sn"
                )
            return layer

        self.dense_layers = [dense(h, f"dense_{i}") for i, h in enumerate(self.hidden_dims)]
        self.activation_layers = [
            keras.layers.LeakyReLU(negative_slope=self.negative_slope, name=f"leaky_relu_{i}")
            for i in range(len(self.hidden_dims))
        ]
        self.dropout_layers = [
            keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
            for i in range(len(self.hidden_dims))
        ]
        self.output_layer = dense(1, "output")

    def build(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            last = sum(int(s[-1]) for s in input_shape)
            input_shape = tuple(input_shape[0][:-1]) + (last,)
        if input_shape[-1] != self.input_dim:
            raise ValueError(
                f"{self.name}: expected inputs whose last dimensions sum to input_dim={self.input_dim}; "
                f"got {input_shape}."
            )
        shape = tuple(input_shape)
        for layer in self.dense_layers + [self.output_layer]:
            if not layer.built:
                layer.build(shape)
            units = layer.layer.units if self.lipschitz == "spectral" else layer.units
            shape = shape[:-1] + (units,)

    def call(self, inputs, training=None):
        x = ops.concatenate(list(inputs), axis=-1) if isinstance(inputs, (list, tuple)) else inputs
        for dense, act, drop in zip(self.dense_layers, self.activation_layers, self.dropout_layers):
            x = dense(x, training=training) if self.lipschitz == "spectral" else dense(x)
            x = drop(act(x), training=training)
        x = (
            self.output_layer(x, training=training)
            if self.lipschitz == "spectral"
            else self.output_layer(x)
        )
        if self.output_activation is not None:
            x = keras.activations.get(self.output_activation)(x)
        return ops.squeeze(x, axis=-1)

    def score_matrix(self, x, y, training=None):
        """`S[i, j] = T([x_i, y_j])` for all pairs: tensor [B_x, B_y], diagonal = joint samples."""
        return self(pairwise_concat(x, y), training=training)

    def gradient_penalty(
        self, joint, marginal, *, target=1.0, one_sided=None, seed=None, training=None
    ):
        """E[(‖∇_x̂ T(x̂)‖₂ − target)²] at interpolates x̂ of joint and marginal samples (unweighted).

        Args:
            joint, marginal: tensors [B, input_dim] (or lists of tensors, concatenated like `call`).
            target: float, the Lipschitz constant to enforce.
            one_sided: bool or None (None = the layer's `one_sided_penalty`).
            seed: seed of the interpolation draw (None = the layer's seed generator, or unseeded).
            training: passed to `call` (dropout, spectral-norm power iteration).

        Returns:
            Scalar tensor, float32 at least.
        """
        joint, marginal = (
            ops.concatenate(list(v), axis=-1) if isinstance(v, (list, tuple)) else v
            for v in (joint, marginal)
        )
        seed = self.seed_generator if seed is None else seed
        x_hat = ops.stop_gradient(interpolate_samples(joint, marginal, seed=seed))
        _, grads = input_gradients(lambda v: self(v, training=training), x_hat)
        one_sided = self.one_sided_penalty if one_sided is None else one_sided
        return bounds.gradient_penalty(
            gradients=ops.cast(grads, "float32"), target=target, one_sided=one_sided
        )

    def lipschitz_penalty(self, joint, marginal, training=None):
        """The term a critic-stage loss adds: λ·`gradient_penalty` with `lipschitz="gradient_penalty"`, else 0."""
        if self.lipschitz != "gradient_penalty":
            return ops.zeros((), dtype="float32")
        return self.gradient_penalty_weight * self.gradient_penalty(
            joint, marginal, training=training
        )

    def compute_output_shape(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            input_shape = input_shape[0]
        return tuple(input_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "hidden_dims": list(self.hidden_dims),
                "dropout": self.dropout,
                "negative_slope": self.negative_slope,
                "output_activation": self.output_activation,
                "lipschitz": self.lipschitz,
                "power_iterations": self.power_iterations,
                "gradient_penalty_weight": self.gradient_penalty_weight,
                "one_sided_penalty": self.one_sided_penalty,
                "seed": self.seed,
            }
        )
        return config


def interpolate_samples(joint, marginal, *, seed=None):
    """Random points on the segments between joint and marginal samples, for the gradient penalty.

    x̂ = u·x_joint + (1−u)·x_marginal, u ~ U(0, 1) per row (Gulrajani et al., 2017, Algorithm 1).

    Example:
    >>> x_hat = interpolate_samples(ops.zeros((4, 3)), ops.ones((4, 3)), seed=keras.random.SeedGenerator(0))
    """
    joint = ops.convert_to_tensor(joint)
    shape = (ops.shape(joint)[0],) + (1,) * (len(ops.shape(joint)) - 1)
    u = keras.random.uniform(shape, seed=seed, dtype=joint.dtype)
    return u * joint + (1.0 - u) * ops.cast(marginal, joint.dtype)
