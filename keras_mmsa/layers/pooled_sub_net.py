"""`PooledSubNet`: masked mean of the valid frames -> batch norm -> dropout -> three ReLU layers."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class PooledSubNet(keras.layers.Layer):
    """The acoustic / visual subnetwork of TFN and LMF: the mean of the valid frames -> batch norm -> dropout -> 3 ReLU layers.

    Called on zero-padded frames `[B, T, D]` and their lengths `[B]`; returns `[B, hidden_dim]`. The mean runs
    over the first `lengths[b]` frames only (lengths are clipped to `[1, T]`).

    Args:
        hidden_dim: width of the three dense layers (the output size).
        dropout: dropout rate after the batch normalisation.
        **kwargs: base layer arguments.

    Example:
    >>> net = PooledSubNet(hidden_dim=8)
    >>> net(keras.random.normal((2, 10, 5)), keras.ops.array([3, 10])).shape
    (2, 8)

    Reference:
        Zadeh et al. 2017 (TFN), §3.1 "Audio / Visual Embedding Subnetwork": features averaged over the
        utterance, then a deep network of three ReLU layers of equal width; Liu et al. 2018 (LMF) reuse it.
    """

    def __init__(self, hidden_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        # PyTorch's BatchNorm1d defaults (momentum 0.1 on the new statistic, eps 1e-5).
        self.norm = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name="norm"
        )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.dense = [
            keras.layers.Dense(
                hidden_dim, activation="relu", dtype=self.dtype_policy, name=f"dense_{i}"
            )
            for i in range(3)
        ]

    def build(self, frames_shape, lengths_shape=None):
        shape = (frames_shape[0], frames_shape[-1])
        self.norm.build(shape)
        for layer in self.dense:
            layer.build(shape)
            shape = (shape[0], self.hidden_dim)
        self.built = True

    def call(self, frames, lengths, training=None):
        frames = ops.convert_to_tensor(frames, dtype=self.compute_dtype)
        steps = ops.shape(frames)[1]
        lengths = ops.clip(ops.cast(lengths, "int32"), 1, steps)
        mask = ops.cast(ops.arange(steps)[None, :] < lengths[:, None], frames.dtype)
        pooled = (
            ops.sum(frames * mask[..., None], axis=1) / ops.cast(lengths, frames.dtype)[:, None]
        )
        h = self.dropout_layer(self.norm(pooled, training=training), training=training)
        for layer in self.dense:
            h = layer(h)
        return h

    def compute_output_shape(self, frames_shape, lengths_shape=None):
        return (frames_shape[0], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "dropout": self.dropout})
        return config
