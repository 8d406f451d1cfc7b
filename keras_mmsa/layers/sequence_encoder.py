"""LSTM encoder over zero-padded sequences with their true lengths."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SequenceEncoder(keras.layers.Layer):
    """Encodes a zero-padded `[B, T, D]` sequence into one vector: LSTM final state -> dropout -> Dense.

    The LSTM sees exactly the first `lengths[b]` frames of example `b` (a padding mask built from the lengths), so
    the final state equals the one a packed-sequence LSTM computes on the unpadded sequence; the backward
    direction of a bidirectional encoder starts at frame `lengths[b] - 1`. This is the "sLSTM" of MMIM eq. 2 and
    the visual/acoustic sub-network of Self-MM / MMIM's reference code.

    Args:
        hidden_dim: LSTM units (per direction).
        output_dim: size of the output vector.
        num_layers: stacked LSTM layers; `dropout` is applied between them and on the final state.
        bidirectional: concatenate the forward and backward final states.
        dropout: dropout rate on the final state (and between layers).
        kernel_initializer: initializer of the LSTM kernels and of the output projection.
        recurrent_initializer: initializer of the LSTM recurrent kernels.
        **kwargs: base layer arguments.

    Example:
    >>> enc = SequenceEncoder(hidden_dim=8, output_dim=4)
    >>> x = keras.random.normal((2, 10, 5))
    >>> enc(x, keras.ops.array([3, 10])).shape
    (2, 4)

    Reference:
        Han et al. 2021 (MMIM), eq. 2; Hochreiter & Schmidhuber 1997.
    """

    def __init__(
        self,
        hidden_dim,
        output_dim,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        kernel_initializer="glorot_normal",
        recurrent_initializer="glorot_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.rnns = []
        for i in range(num_layers):
            last = i == num_layers - 1
            rnn = keras.layers.LSTM(
                hidden_dim,
                return_sequences=not last,
                kernel_initializer=self.kernel_initializer,
                recurrent_initializer=self.recurrent_initializer,
                dtype=self.dtype_policy,
                name=f"lstm_{i}",
            )
            if bidirectional:
                rnn = keras.layers.Bidirectional(rnn, dtype=self.dtype_policy, name=f"bilstm_{i}")
            self.rnns.append(rnn)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.projection = keras.layers.Dense(
            output_dim,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, sequence_shape, lengths_shape=None):
        shape = tuple(sequence_shape)
        for rnn in self.rnns:
            rnn.build(shape)
            width = self.hidden_dim * (2 if self.bidirectional else 1)
            shape = shape[:2] + (width,)
        self.projection.build((sequence_shape[0], shape[-1]))
        self.built = True

    def call(self, sequence, lengths, training=None):
        steps = ops.shape(sequence)[1]
        lengths = ops.clip(ops.cast(lengths, "int32"), 1, steps)
        mask = ops.arange(steps)[None, :] < lengths[:, None]
        h = sequence
        for i, rnn in enumerate(self.rnns):
            h = rnn(h, mask=mask, training=training)
            if i < self.num_layers - 1:
                h = self.dropout_layer(h, training=training)
        h = self.dropout_layer(h, training=training)
        return self.projection(h)

    def compute_output_shape(self, sequence_shape, lengths_shape=None):
        return (sequence_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "num_layers": self.num_layers,
                "bidirectional": self.bidirectional,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            }
        )
        return config
