"""The fusion network F of MMIM: concatenated unimodal vectors -> fusion result Z -> sentiment score."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MLPFusion(keras.layers.Layer):
    """Stacked linear-activation fusion: `Z = act(W2 act(W1 dropout([h_t; h_v; h_a])))`, `y = W3 Z`.

    Called on a list of unimodal vectors; returns `(Z, prediction)` with `prediction` of shape `[B]`.

    Args:
        hidden_dim: size of the fusion result Z (MMIM: 128).
        dropout: dropout rate on the concatenated input.
        activation: activation of both hidden layers (MMIM: tanh).
        output_dim: size of the prediction (1 for regression; the output is squeezed to `[B]` then).
        kernel_initializer: initializer of the three kernels.
        **kwargs: base layer arguments.

    Example:
    >>> fusion = MLPFusion(hidden_dim=8)
    >>> z, y = fusion([keras.ops.ones((2, 4)), keras.ops.ones((2, 3))])
    >>> z.shape, y.shape
    ((2, 8), (2,))

    Reference:
        Han et al. 2021 (MMIM), §3.2 "fusion network F of stacked linear-activation layers".
    """

    def __init__(
        self,
        hidden_dim=128,
        dropout=0.0,
        activation="tanh",
        output_dim=1,
        kernel_initializer="glorot_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.output_dim = output_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        dense = dict(kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.hidden_1 = keras.layers.Dense(hidden_dim, name="hidden_1", **dense)
        self.hidden_2 = keras.layers.Dense(hidden_dim, name="hidden_2", **dense)
        self.head = keras.layers.Dense(output_dim, name="head", **dense)

    def build(self, input_shapes):
        width = sum(int(s[-1]) for s in input_shapes)
        batch = input_shapes[0][0]
        self.hidden_1.build((batch, width))
        self.hidden_2.build((batch, self.hidden_dim))
        self.head.build((batch, self.hidden_dim))
        self.built = True

    def call(self, inputs, training=None):
        z = self.fuse(inputs, training=training)
        return z, self.regress(z)

    def fuse(self, inputs, training=None):
        """The fusion result Z `[B, hidden_dim]` of a list of unimodal vectors."""
        h = ops.concatenate(list(inputs), axis=-1)
        h = self.dropout_layer(h, training=training)
        h = self.activation(self.hidden_1(h))
        return self.activation(self.hidden_2(h))

    def regress(self, z):
        """The prediction head on Z: `[B]` (or `[B, output_dim]` when `output_dim > 1`)."""
        y = self.head(z)
        if self.output_dim == 1:
            y = ops.squeeze(y, axis=-1)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "output_dim": self.output_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
