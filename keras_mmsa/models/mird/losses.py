"""MIRD's log-losses (eq. 18-19) as keyword-only pure functions over keras.ops, with per-example weights."""

from keras import ops

LOG_EPSILON = 1e-6
"""ε inside every log-loss: log(MSE + ε). The log of a mean squared error is -inf at a perfect fit (and its
gradient 1/MSE explodes near it); ε = 1e-6 caps the loss at log(1e-6) ≈ -13.8 and the gradient scale at 1e6,
far below where sentiment MSEs (~0.5-2) or feature MSEs of standardized features live."""


def log_mse(*, y_true, y_pred, sample_weight=None, epsilon=LOG_EPSILON):
    """log(weighted MSE + ε) of the task (eq. 18). `y_true`, `y_pred` `[B]`; `sample_weight` `[B]` (0 for
    unlabeled examples, which then contribute nothing). With all weights 0 the MSE is 0 (not 0/0)."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    w = (
        ops.ones_like(y_true)
        if sample_weight is None
        else ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    )
    mse = ops.sum(w * ops.square(y_pred - y_true)) / ops.maximum(ops.sum(w), 1e-12)
    return ops.log(mse + epsilon)


def masked_log_mse(*, x_true, x_pred, mask, epsilon=LOG_EPSILON):
    """log(masked MSE + ε) of a reconstructed sequence (eq. 19, audio/vision). `x_true`, `x_pred` `[B, T, D]`,
    `mask` `[B, T]`: padding frames contribute nothing; the mean is over valid frames x features."""
    m = ops.cast(mask, "float32")[..., None]
    err = ops.sum(m * ops.square(ops.cast(x_pred, "float32") - ops.cast(x_true, "float32")))
    count = ops.maximum(ops.sum(m) * ops.cast(ops.shape(x_true)[-1], "float32"), 1.0)
    return ops.log(err / count + epsilon)


def masked_log_cross_entropy(*, token_ids, logits, mask, epsilon=LOG_EPSILON):
    """log(masked token cross-entropy + ε) of the reconstructed text (eq. 19 says CE: the decoder predicts token
    ids over the vocabulary). `token_ids` `[B, L]`, `logits` `[B, L, V]`, `mask` `[B, L]`."""
    ce = ops.sparse_categorical_crossentropy(
        ops.cast(token_ids, "int32"), ops.cast(logits, "float32"), from_logits=True
    )
    m = ops.cast(mask, "float32")
    return ops.log(ops.sum(m * ce) / ops.maximum(ops.sum(m), 1.0) + epsilon)
