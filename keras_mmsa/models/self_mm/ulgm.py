"""Unimodal label generation (ULGM) of Self-MM, as pure tensor functions.

Yu et al., "Learning Modality-Specific Representations with Self-Supervised
Multi-Task Learning for Multimodal Sentiment Analysis", AAAI 2021, §3.3.

These are the building blocks the `SelfMM` method (not yet written) is meant
to call from its train step: class centres from the features of examples
whose current label is positive / negative, relative distances to those
centres, the unimodal label from the multimodal one, the momentum-of-epochs
average of the per-example label memory, and the weighted L1 loss.
"""

from keras import ops

EPS = 1e-8


def class_centres(features, labels, previous=None, momentum=0.0, exclude_zero=False):
    """Positive and negative class centres of a set of representations.

    The positive centre is the mean of the rows whose label is `> 0`
    (`>= 0` unless `exclude_zero`), the negative centre the mean of the rows
    whose label is `< 0`. A class with no member keeps `previous` (zeros when
    there is none). With `momentum` > 0 the centres move as
    `momentum * previous + (1 - momentum) * mean`; `momentum=0` is the plain
    mean MMSA recomputes from its feature memory.

    Args:
        features: float tensor `[N, D]`.
        labels: float tensor `[N]`.
        previous: optional pair `(pos [D], neg [D])`.
        momentum: float in `[0, 1)`.
        exclude_zero: bool, whether label 0 counts as positive.

    Returns:
        `(pos, neg)`, each `[D]`.

    Example:
    >>> import numpy as np
    >>> f = np.array([[1., 0.], [3., 0.], [0., -2.]], "float32")
    >>> pos, neg = class_centres(f, np.array([1., 2., -1.], "float32"))
    >>> [float(v) for v in pos], [float(v) for v in neg]
    ([2.0, 0.0], [0.0, -2.0])
    """
    features = ops.convert_to_tensor(features, "float32")
    labels = ops.convert_to_tensor(labels, "float32")
    pos_mask = labels > 0 if exclude_zero else labels >= 0
    neg_mask = labels < 0
    dim = ops.shape(features)[-1]
    if previous is None:
        previous = (ops.zeros((dim,)), ops.zeros((dim,)))

    def centre(mask, prev):
        w = ops.cast(mask, "float32")[:, None]
        count = ops.sum(w)
        mean = ops.sum(w * features, axis=0) / ops.maximum(count, 1.0)
        moved = momentum * prev + (1.0 - momentum) * mean
        return ops.where(count > 0, moved, prev)

    return centre(pos_mask, previous[0]), centre(neg_mask, previous[1])


def relative_distance(features, pos, neg):
    """`delta = (d_n - d_p) / (d_p + eps)`, Euclidean distances to centres.

    Args:
        features: `[B, D]`; pos, neg: `[D]`.

    Returns:
        `[B]`: positive when the row is nearer the positive centre.
    """
    d_p = ops.norm(features - pos, axis=-1)
    d_n = ops.norm(features - neg, axis=-1)
    return (d_n - d_p) / (d_p + EPS)


def unimodal_label(y_fusion, delta_s, delta_f, bound):
    """Unimodal label from the fused label and the relative distances.

    `y_s = 0.5 * (delta_s / delta_f) * y_f + 0.5 * (y_f + delta_s - delta_f)`,
    clipped to `[-bound, bound]` (the paper's average of its ratio and
    difference forms; `bound` is the label range H, 3 for MOSI/MOSEI, 1 for
    SIMS).

    Args:
        y_fusion: `[B]`, the fused label memory of the batch.
        delta_s, delta_f: `[B]`, unimodal and fused relative distances.
        bound: float H.

    Returns:
        `[B]`.
    """
    alpha = delta_s / (delta_f + EPS)
    y = 0.5 * alpha * y_fusion + 0.5 * (y_fusion + delta_s - delta_f)
    return ops.clip(y, -bound, bound)


def momentum_of_epochs(memory, new, epoch):
    """Label memory update `(n-1)/(n+1) * memory + 2/(n+1) * new`.

    `epoch` is 1-based; the method applies it from epoch 2 on (at epoch 1 the
    memory holds the multimodal label it was initialised with).
    """
    n = ops.cast(epoch, "float32")
    return (n - 1.0) / (n + 1.0) * memory + 2.0 / (n + 1.0) * new


def weighted_l1(y_pred, y_true, y_unimodal_memory=None, y_fusion_memory=None):
    """Mean of `w * |y_pred - y_true|`, `w = tanh(|y_s - y_f|)` detached.

    With no memories given `w = 1` (the multimodal task).
    """
    y_pred = ops.reshape(y_pred, (-1,))
    y_true = ops.reshape(y_true, (-1,))
    if y_unimodal_memory is None:
        w = ops.ones_like(y_pred)
    else:
        w = ops.stop_gradient(ops.tanh(ops.abs(y_unimodal_memory - y_fusion_memory)))
    return ops.mean(w * ops.abs(y_pred - y_true))
