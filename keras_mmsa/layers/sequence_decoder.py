"""`SequenceDecoder`: an LSTM that unrolls a fixed vector into a sequence of given lengths (MIRD's decoders)."""

import keras
from keras import ops

from keras_mmsa.layers.sequence_encoder import packed_lstm


@keras.saving.register_keras_serializable(package="keras_mmsa")
class SequenceDecoder(keras.layers.Layer):
    """Decodes a vector `c` `[B, C]` into a sequence `[B, T, output_dim]`: the LSTM reads `c` at every step
    (`c` repeated over the T frames) and a Dense maps each state to a frame.

    Each example runs exactly `lengths[b]` steps (the packed recurrence of `SequenceEncoder`,
    `keras_mmsa.layers.sequence_encoder.packed_lstm`, so padding costs little); padding frames of the output
    hold the Dense bias and must be masked by the loss. The weights sit in a `keras.layers.LSTM` (same
    variables as a plain Keras LSTM decoder).

    Call arguments: `condition` `[B, C]`, `lengths` int `[B]` in `[1, T]`, keyword `steps` (T: a python int or a scalar tensor).

    Args:
        hidden_dim: LSTM units.
        output_dim: size of each output frame.
        **kwargs: base layer arguments.

    Example:
    >>> dec = SequenceDecoder(hidden_dim=8, output_dim=5)
    >>> dec(keras.random.normal((2, 6)), keras.ops.array([3, 10]), steps=10).shape
    (2, 10, 5)

    Reference:
        Qian et al. "MIRD", §3.4, eq. 8 (LSTM decoders of (z^m, z^S)).
    """

    def __init__(self, hidden_dim, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.rnn = keras.layers.LSTM(
            self.hidden_dim, return_sequences=True, dtype=self.dtype_policy, name="lstm"
        )
        self.projection = keras.layers.Dense(
            self.output_dim, dtype=self.dtype_policy, name="projection"
        )

    def build(self, condition_shape, lengths_shape=None):
        self.rnn.build((condition_shape[0], None, condition_shape[-1]))
        self.projection.build((condition_shape[0], None, self.hidden_dim))
        self.built = True

    def call(self, condition, lengths, steps):
        condition = ops.convert_to_tensor(condition, dtype=self.compute_dtype)
        lengths = ops.clip(ops.cast(lengths, "int32"), 1, steps)
        x = condition[:, None, :] + ops.zeros((1, steps, 1), dtype=condition.dtype)
        cell = self.rnn.cell
        _, seq = packed_lstm(x, lengths, cell.kernel, cell.bias, cell.recurrent_kernel)
        return self.projection(seq)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "output_dim": self.output_dim})
        return config
