import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SeparableCritic(keras.layers.Layer):
    """A separable critic f(x, y) = g(x)ᵀ h(y): one matrix product scores every pair of a batch.

    g and h are MLPs (hidden layers then a linear `embed_dim` output). The score matrix costs
    O(B·cost(MLP) + B²·embed_dim) instead of the O(B²·cost(MLP)) of a concatenation critic, which is what
    makes it the usual choice for InfoNCE with large batches (Poole et al., 2019, §4: 2×256 ReLU layers,
    embedding 32).

    Args:
        embed_dim: int, the dimension of g(x) and h(y).
        hidden_dims: sequence of ints, hidden widths of both MLPs.
        activation: str, hidden activation.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> critic = SeparableCritic(embed_dim=8, hidden_dims=[32])
    >>> scores = critic.score_matrix(keras.random.normal((16, 5)), keras.random.normal((16, 3)))  # [16, 16]
    >>> joint = critic(keras.random.normal((16, 5)), keras.random.normal((16, 3)))  # [16], f(x_i, y_i)

    Reference: Poole et al. (2019), "On variational bounds of mutual information", §4 (separable critic);
    Oord et al. (2018), the bilinear CPC critic.
    """

    def __init__(self, embed_dim, *, hidden_dims=(256, 256), activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.activation = activation

        def mlp(prefix):
            layers = [
                keras.layers.Dense(h, activation=activation, name=f"{prefix}_hidden_{i}")
                for i, h in enumerate(self.hidden_dims)
            ]
            return layers + [keras.layers.Dense(self.embed_dim, name=f"{prefix}_embedding")]

        self.g_layers = mlp("g")
        self.h_layers = mlp("h")

    def build(self, x_shape, y_shape):
        for layers, shape in ((self.g_layers, tuple(x_shape)), (self.h_layers, tuple(y_shape))):
            for layer in layers:
                if not layer.built:
                    layer.build(shape)
                shape = shape[:-1] + (layer.units,)

    @staticmethod
    def _run(layers, v):
        for layer in layers:
            v = layer(v)
        return v

    def score_matrix(self, x, y):
        """`S[i, j] = g(x_i)ᵀ h(y_j)`: tensor [B_x, B_y], diagonal = joint pairs."""
        return self(x, y, pairwise=True)

    def call(self, x, y, pairwise=False):
        gx, hy = self._run(self.g_layers, x), self._run(self.h_layers, y)
        if pairwise:
            return ops.matmul(gx, ops.transpose(hy))
        return ops.sum(gx * hy, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embed_dim": self.embed_dim,
                "hidden_dims": list(self.hidden_dims),
                "activation": self.activation,
            }
        )
        return config
