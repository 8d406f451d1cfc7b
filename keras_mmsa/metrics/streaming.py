"""The MSA metric suite as streaming Keras metrics, for `compile(metrics=...)`, `evaluate` and a `test_step`.

`MSAMetrics` (all keys, `result()` is a dict) and `MSAMetric` (one key) / `msa_keras_metrics(family)` keep
sufficient statistics in variables and compute exactly the numbers of the numpy reference
(`keras_mmsa.metrics.reference`, whose docstring defines every key) over any batching, with `keras.ops` only, so
they compile under `jit_compile=True`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_mmsa.metrics.reference import SIMS_EDGES, metric_keys


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MSAMetrics(keras.metrics.Metric):
    """The whole MSA metric table as one streaming Keras metric; `result()` is a dict.

    Keeps sufficient statistics in variables, so it is exact over any batching: weighted sample count, sum of
    |p - y|, Pearson moments merged batch by batch with Chan et al.'s parallel update of centred sums (stable
    in float32, no catastrophic cancellation of raw sums of squares), the min/max of p and y (to detect
    constant inputs exactly), correct counts of the rounded/binned classes and 2x2 confusion matrices for the
    weighted F1 (per-class TP/FP/FN). `y_true` and `y_pred` may be [B] or [B, 1]; `sample_weight` [B] or
    scalar. Uses `keras.ops` only and compiles under XLA.

    In Keras 3.15 `compile(metrics=[MSAMetrics()])` puts every key in the logs as its own entry (`mae`, `corr`,
    ..., and `val_mae`, ... in `fit`): dict results are flattened by key, without the metric's name. If the
    keys would collide with other metrics (another `"mae"` metric, several outputs), use one `MSAMetric` per
    key (`msa_keras_metrics`), whose names Keras prefixes per output.

    NaN or inf in the inputs propagate to `mae`/`corr` (visible, not hidden); use the numpy form to get an
    error that names the offending array.

    Args:
        family: `"mosi"`, `"mosei"` or `"sims"`; selects the keys and definitions
            (`keras_mmsa.metrics.reference`).
        undefined: value of a metric that is undefined (constant p or y for `corr`, empty Non0 subset,
            no sample at all); 0.0 by default, `float("nan")` to get NaN.
        name: metric name.
        dtype: dtype of the state and of the comparisons (float32 by default).

    Example:
    >>> m = MSAMetrics(family="mosi")
    >>> m.update_state([-1.0, 0.0], [-0.4, 0.2])
    >>> m.update_state([2.0], [1.6])
    >>> float(m.result()["has0_acc2"])
    1.0

    Reference: Han et al., 2021 (MMIM) §4.1; DESIGN §3 "Metrics"; Chan, Golub & LeVeque, 1979 (pairwise
    update of centred moments).
    """

    def __init__(self, family="mosi", undefined=0.0, name="msa_metrics", dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.keys = metric_keys(family)
        self.family = str(family).lower()
        self.undefined = float(undefined)
        self._is_sims = self.family == "sims"

        # (variable, initial value) pairs, for reset_state.
        self._initial_values = []

        def scalar(var_name, value=0.0):
            var = self.add_variable(
                shape=(),
                initializer=keras.initializers.Constant(value),
                dtype=self.dtype,
                name=var_name,
            )
            self._initial_values.append((var, value))
            return var

        def confusion(var_name):
            var = self.add_variable(
                shape=(2, 2), initializer="zeros", dtype=self.dtype, name=var_name
            )
            self._initial_values.append((var, 0.0))
            return var

        self.count = scalar("count")
        self.abs_error = scalar("abs_error")
        self.mean_pred = scalar("mean_pred")
        self.mean_true = scalar("mean_true")
        self.m2_pred = scalar("m2_pred")
        self.m2_true = scalar("m2_true")
        self.co_moment = scalar("co_moment")
        self.min_pred = scalar("min_pred", math.inf)
        self.max_pred = scalar("max_pred", -math.inf)
        self.min_true = scalar("min_true", math.inf)
        self.max_true = scalar("max_true", -math.inf)
        if self._is_sims:
            self.correct3 = scalar("correct3")
            self.correct5 = scalar("correct5")
            self.confusion2 = confusion("confusion2")
        else:
            self.correct7 = scalar("correct7")
            self.correct5 = scalar("correct5")
            self.confusion_has0 = confusion("confusion_has0")
            self.confusion_non0 = confusion("confusion_non0")

    def update_state(self, y_true, y_pred, sample_weight=None):
        dtype = self.dtype
        y = ops.reshape(ops.cast(ops.convert_to_tensor(y_true), dtype), (-1,))
        p = ops.reshape(ops.cast(ops.convert_to_tensor(y_pred), dtype), (-1,))
        if y.shape[0] is not None and p.shape[0] is not None and y.shape[0] != p.shape[0]:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}': y_true has {y.shape[0]} element(s) but y_pred has "
                f"{p.shape[0]}; expected [B] or [B, 1] for both."
            )
        if sample_weight is None:
            w = ops.ones_like(y)
        else:
            w = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
            w = ops.broadcast_to(ops.reshape(w, (-1,)), ops.shape(y))

        if self._is_sims:
            y_reg, p_reg = ops.clip(y, -1.0, 1.0), ops.clip(p, -1.0, 1.0)
        else:
            y_reg, p_reg = y, p
        self._update_regression(y_reg, p_reg, w)

        if self._is_sims:
            self.correct3.assign_add(_weighted_hits(_bins(y, 3), _bins(p, 3), w))
            self.correct5.assign_add(_weighted_hits(_bins(y, 5), _bins(p, 5), w))
            self.confusion2.assign_add(_confusion(_bins(y, 2), _bins(p, 2), w))
        else:
            self.correct7.assign_add(_weighted_hits(_rounded(y, 3.0), _rounded(p, 3.0), w))
            self.correct5.assign_add(_weighted_hits(_rounded(y, 2.0), _rounded(p, 2.0), w))
            zero = ops.zeros_like(y)
            has0_t = ops.cast(ops.greater_equal(y, zero), "int32")
            has0_p = ops.cast(ops.greater_equal(p, zero), "int32")
            self.confusion_has0.assign_add(_confusion(has0_t, has0_p, w))
            non0_w = w * ops.cast(ops.not_equal(y, zero), dtype)
            non0_t = ops.cast(ops.greater(y, zero), "int32")
            non0_p = ops.cast(ops.greater(p, zero), "int32")
            self.confusion_non0.assign_add(_confusion(non0_t, non0_p, non0_w))

    def _update_regression(self, y, p, w):
        nb = ops.sum(w)
        mean_p_b = ops.divide_no_nan(ops.sum(w * p), nb)
        mean_y_b = ops.divide_no_nan(ops.sum(w * y), nb)
        dp, dy = p - mean_p_b, y - mean_y_b
        na = ops.convert_to_tensor(self.count)
        n = na + nb
        ratio = ops.divide_no_nan(nb, n)  # nb / n, 0 for an empty or all-zero-weight batch
        delta_p = mean_p_b - self.mean_pred
        delta_y = mean_y_b - self.mean_true
        self.m2_pred.assign(self.m2_pred + ops.sum(w * dp * dp) + delta_p * delta_p * na * ratio)
        self.m2_true.assign(self.m2_true + ops.sum(w * dy * dy) + delta_y * delta_y * na * ratio)
        self.co_moment.assign(
            self.co_moment + ops.sum(w * dp * dy) + delta_p * delta_y * na * ratio
        )
        self.mean_pred.assign(self.mean_pred + delta_p * ratio)
        self.mean_true.assign(self.mean_true + delta_y * ratio)
        self.count.assign(n)
        self.abs_error.assign_add(ops.sum(w * ops.abs(p - y)))
        used = ops.greater(w, 0.0)
        inf = ops.cast(math.inf, self.dtype)
        self.min_pred.assign(ops.minimum(self.min_pred, ops.min(ops.where(used, p, inf))))
        self.max_pred.assign(ops.maximum(self.max_pred, ops.max(ops.where(used, p, -inf))))
        self.min_true.assign(ops.minimum(self.min_true, ops.min(ops.where(used, y, inf))))
        self.max_true.assign(ops.maximum(self.max_true, ops.max(ops.where(used, y, -inf))))

    def result(self):
        undefined = ops.cast(self.undefined, self.dtype)
        count = ops.convert_to_tensor(self.count)
        has_data = ops.greater(count, 0.0)

        def fraction(num, den):
            return ops.where(ops.greater(den, 0.0), ops.divide_no_nan(num, den), undefined)

        scale = ops.sqrt(self.m2_pred) * ops.sqrt(self.m2_true)
        corr_defined = ops.logical_and(
            ops.logical_and(has_data, ops.greater(scale, 0.0)),
            ops.logical_and(
                ops.greater(self.max_pred, self.min_pred), ops.greater(self.max_true, self.min_true)
            ),
        )
        corr = ops.clip(ops.divide_no_nan(self.co_moment, scale), -1.0, 1.0)
        out = {
            "mae": fraction(self.abs_error, count),
            "corr": ops.where(corr_defined, corr, undefined),
        }
        if self._is_sims:
            conf2 = ops.convert_to_tensor(self.confusion2)
            out["acc2"] = fraction(ops.trace(conf2), ops.sum(conf2))
            out["acc3"] = fraction(self.correct3, count)
            out["acc5"] = fraction(self.correct5, count)
            out["f1"] = _weighted_f1_ops(conf2, undefined)
        else:
            has0 = ops.convert_to_tensor(self.confusion_has0)
            non0 = ops.convert_to_tensor(self.confusion_non0)
            out["acc7"] = fraction(self.correct7, count)
            out["acc5"] = fraction(self.correct5, count)
            out["has0_acc2"] = fraction(ops.trace(has0), ops.sum(has0))
            out["has0_f1"] = _weighted_f1_ops(has0, undefined)
            out["non0_acc2"] = fraction(ops.trace(non0), ops.sum(non0))
            out["non0_f1"] = _weighted_f1_ops(non0, undefined)
        return {k: out[k] for k in self.keys}

    def reset_state(self):
        for var, value in self._initial_values:
            var.assign(ops.full(var.shape, value, dtype=var.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"family": self.family, "undefined": self.undefined})
        return config


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MSAMetric(MSAMetrics):
    """One key of the MSA table as a scalar Keras metric (same definitions and state as `MSAMetrics`).

    Use it when each metric must be its own log entry under its own name (other metrics named `mae`,
    multi-output models where Keras prefixes metric names with the output name), or with tools that
    expect scalar results. `msa_keras_metrics(family)` builds one per key.

    Args:
        key: one of `metric_keys(family)`, e.g. `"non0_acc2"`.
        family: `"mosi"`, `"mosei"` or `"sims"`.
        undefined: value when the metric is undefined (see `MSAMetrics`).
        name: metric name; defaults to `key`.
        dtype: dtype of the state.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(loss="mae", metrics=msa_keras_metrics("mosi"))

    Reference: as `MSAMetrics`.
    """

    def __init__(self, key, family="mosi", undefined=0.0, name=None, dtype=None, **kwargs):
        keys = metric_keys(family)
        if key not in keys:
            raise ValueError(
                f"MSAMetric: unknown key {key!r} for family {family!r}; expected one of {keys}."
            )
        super().__init__(
            family=family, undefined=undefined, name=name or key, dtype=dtype, **kwargs
        )
        self.key = key

    def result(self):
        return super().result()[self.key]

    def get_config(self):
        config = super().get_config()
        config["key"] = self.key
        return config


def msa_keras_metrics(family: str = "mosi", *, undefined: float = 0.0) -> list[MSAMetric]:
    """One scalar `MSAMetric` per key of `family`, in key order, for `model.compile(metrics=...)`."""
    return [MSAMetric(k, family=family, undefined=undefined) for k in metric_keys(family)]


def _rounded(x, r):
    return ops.cast(ops.round(ops.clip(x, -r, r)), "int32")


def _bins(x, num_classes):
    out = ops.zeros(ops.shape(x), "int32")
    for edge in SIMS_EDGES[num_classes]:
        out = out + ops.cast(ops.greater(x, ops.cast(edge, x.dtype)), "int32")
    return out


def _weighted_hits(t, q, w):
    return ops.sum(w * ops.cast(ops.equal(t, q), w.dtype))


def _confusion(t, q, w):
    """Weighted 2x2 confusion counts, rows = truth, columns = prediction."""
    t1 = ops.one_hot(t, 2, dtype=w.dtype) * ops.expand_dims(w, -1)
    return ops.matmul(ops.transpose(t1), ops.one_hot(q, 2, dtype=w.dtype))


def _weighted_f1_ops(conf, undefined):
    support = ops.sum(conf, axis=1)
    total = ops.sum(support)
    tp = ops.diagonal(conf)
    f1 = ops.divide_no_nan(2.0 * tp, support + ops.sum(conf, axis=0))
    return ops.where(
        ops.greater(total, 0.0), ops.divide_no_nan(ops.sum(support * f1), total), undefined
    )
