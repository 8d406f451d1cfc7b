"""The MSA metric suite as MMSA defines it: the numpy reference over whole arrays.

`msa_metrics(y_true, y_pred, family=...)` computes the field's regression and classification metrics for
MOSI/MOSEI and SIMS on whole arrays and returns a `dict` of Python floats. This module also holds the definitions
that the streaming Keras metric (`keras_mmsa.metrics.streaming.MSAMetrics`) implements with `keras.ops` and must
match exactly (DESIGN §3 "Metrics"): the keys of each family, the SIMS bin edges and the MOSI rounding ranges.

Keys (stable, in this order; `metric_keys(family)`):

| family          | keys                                                                        |
|-----------------|-----------------------------------------------------------------------------|
| `mosi`, `mosei` | `mae, corr, acc7, acc5, has0_acc2, has0_f1, non0_acc2, non0_f1`             |
| `sims`          | `mae, corr, acc2, acc3, acc5, f1`                                           |

Units: every value is returned as a *fraction* (accuracy 0.8614, F1 0.8598, like scikit-learn and Keras); MAE
and Corr are raw. Only the formatters (`keras_mmsa.metrics.reporting`: `format_paper`, `format_markdown`) print
accuracies and F1 as percentages, as the papers do ("Acc-2 86.14/85.98").

Definitions (MOSI/MOSEI; p = prediction, y = label, both nominally in [-3, 3]):

- `mae` = mean |p - y| and `corr` = Pearson(p, y), on the raw (unclipped) values.
- `acc7`: clip both to [-3, 3], round half to even (numpy/TF rounding: 2.5 -> 2, -0.5 -> -0, 1.5 -> 2), accuracy.
  `acc5`: the same with [-2, 2].
- `has0_acc2`, `has0_f1` ("negative / non-negative"): classes y >= 0 vs p >= 0 on all samples.
- `non0_acc2`, `non0_f1` ("negative / positive"): samples with y == 0 are dropped; classes y > 0 vs p > 0.
- F1 is scikit-learn's `f1_score(truth, pred, average="weighted")`: per-class F1 weighted by the class's support
  in the *truth* (MMSA and MMIM swapped the arguments until 2021; the order matters).

SIMS (labels in [-1, 1]): p and y are clipped to [-1, 1] before `mae` and `corr`; `acc2` bins [-1, 0], (0, 1];
`acc3` bins [-1, -0.1], (-0.1, 0.1], (0.1, 1]; `acc5` bins [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7],
(0.7, 1]; `f1` is the weighted F1 on the `acc2` bins. Values beyond +-1 fall in the end bins. Bin edges are
compared in the dtype of the values (a float32 label 0.1 equals float32(0.1) and belongs to (-0.1, 0.1], as in
MMSA), so float32 and float64 inputs put the edges in the same bins.

Degenerate cases (defined, documented, never an accidental NaN). Each of them returns the `undefined` value,
0.0 by default; pass `undefined=float("nan")` to get NaN instead. The numpy form also emits an
`UndefinedMetricWarning` naming the metric:

- `corr` when p or y is constant (Pearson is 0/0; MMSA's `np.corrcoef` returns nan with a RuntimeWarning).
  0.0 is the default because a collapsed (constant) predictor carries no linear information about the label, it
  ranks last on Corr in model selection, and it keeps means over seeds finite.
- `non0_acc2` and `non0_f1` when every label is 0 (empty Non0 subset).
- In the Keras form (`MSAMetrics`), every key before any sample has been seen.

Batches whose truth or predictions hold only one class are fine: a class absent from the truth gets weight 0
in the weighted F1 and a class with no true or predicted sample has F1 0 (scikit-learn's `zero_division=0`),
so "all positive, all predicted negative" gives F1 0.0 and "all positive, all predicted positive" gives 1.0.

`sample_weight` (both forms) weights each sample (all counts, sums and the Pearson moments are weighted);
a weight of 0 removes a sample, e.g. padding in a fixed-shape last batch. Integer weights equal repetition.

Reference: DESIGN §3 "Metrics"; Han et al., 2021 (MMIM), §4.1 "Datasets and Metrics" and Table 2 (Acc-2/F1
printed as non-negative/negative "/" positive/negative); Yu et al., 2020 (CH-SIMS) for the SIMS bins.
"""

from __future__ import annotations

import warnings

import numpy as np

MOSI_KEYS = ("mae", "corr", "acc7", "acc5", "has0_acc2", "has0_f1", "non0_acc2", "non0_f1")
SIMS_KEYS = ("mae", "corr", "acc2", "acc3", "acc5", "f1")
FAMILIES = {"mosi": MOSI_KEYS, "mosei": MOSI_KEYS, "sims": SIMS_KEYS}

# SIMS bin edges: a value v is in class sum(v > edge), so every bin is open below and closed above
# (the lowest one is closed below at -1 too, after clipping).
SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}
# MOSI/MOSEI rounding classes: clip to [-r, r] and round, so class index = round(clip(v)) + r.
MOSI_RANGES = {7: 3.0, 5: 2.0}


class UndefinedMetricWarning(RuntimeWarning):
    """A metric was undefined on the given data (constant input for Corr, empty Non0 subset)."""


def metric_keys(family: str = "mosi") -> tuple[str, ...]:
    """The ordered metric keys of a dataset family (`"mosi"`, `"mosei"` or `"sims"`)."""
    key = str(family).lower()
    if key not in FAMILIES:
        raise ValueError(
            f"Unknown metric family {family!r}; expected one of {sorted(FAMILIES)} "
            "(MOSI and MOSEI share the 7-point [-3, 3] metrics, SIMS has its own [-1, 1] bins)."
        )
    return FAMILIES[key]


def mosi_classes(values, num_classes: int = 7) -> np.ndarray:
    """MOSI/MOSEI class indices: clip to [-3, 3] (7 classes) or [-2, 2] (5), round half to even, shift to 0.

    Args:
        values: array of sentiment scores.
        num_classes: 7 or 5.

    Returns:
        int64 array of the same shape, in [0, num_classes).
    """
    if num_classes not in MOSI_RANGES:
        raise ValueError(f"num_classes must be one of {sorted(MOSI_RANGES)}, got {num_classes}.")
    x = _as_float(values)
    r = MOSI_RANGES[num_classes]
    return (np.round(np.clip(x, -r, r)) + r).astype(np.int64)


def sims_classes(values, num_classes: int = 3) -> np.ndarray:
    """CH-SIMS class indices on the DESIGN §3 bins, edges compared in the dtype of `values`.

    Args:
        values: array of sentiment scores in [-1, 1] (values beyond fall in the end bins).
        num_classes: 2 ([-1, 0], (0, 1]), 3 (edges -0.1, 0.1) or 5 (edges -0.7, -0.1, 0.1, 0.7).

    Returns:
        int64 array of the same shape, in [0, num_classes).
    """
    if num_classes not in SIMS_EDGES:
        raise ValueError(f"num_classes must be one of {sorted(SIMS_EDGES)}, got {num_classes}.")
    x = _as_float(values)
    out = np.zeros(x.shape, dtype=np.int64)
    for edge in SIMS_EDGES[num_classes]:
        out += x > x.dtype.type(edge)
    return out


def weighted_f1(
    y_true, y_pred, *, num_classes: int, sample_weight=None, undefined: float = 0.0
) -> float:
    """scikit-learn's `f1_score(y_true, y_pred, average="weighted")` on integer classes (truth first).

    Per class c: F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) (0 when the class is neither true nor predicted),
    weighted by the (weighted) number of true samples of c. Returns `undefined` when there is no sample.
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    w = (
        np.ones(t.shape, np.float64)
        if sample_weight is None
        else np.asarray(sample_weight, np.float64)
    )
    conf = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(conf, (t, p), w.reshape(-1))
    return _weighted_f1_from_confusion(conf, undefined)


def _weighted_f1_from_confusion(conf: np.ndarray, undefined: float) -> float:
    support = conf.sum(axis=1)
    total = support.sum()
    if total <= 0:
        return float(undefined)
    tp = np.diag(conf)
    denom = support + conf.sum(axis=0)  # = 2 TP + FP + FN
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(np.sum(support * f1) / total)


def msa_metrics(
    y_true,
    y_pred,
    *,
    family: str = "mosi",
    sample_weight=None,
    undefined: float = 0.0,
) -> dict[str, float]:
    """The whole MSA metric table of one set of predictions, as DESIGN §3 defines it.

    Args:
        y_true: labels, shape [N] or [N, 1] (MOSI/MOSEI in [-3, 3], SIMS in [-1, 1]).
        y_pred: predictions, same number of elements.
        family: `"mosi"`, `"mosei"` (same metrics) or `"sims"`.
        sample_weight: optional non-negative per-sample weights, shape [N] (0 drops a sample).
        undefined: the value of a metric that is undefined on this data (see the module docstring);
            0.0 by default, `float("nan")` to get NaN. An `UndefinedMetricWarning` is emitted either way.

    Returns:
        A dict `{key: float}` with the keys of `metric_keys(family)`, in that order. Accuracies and F1 are
        fractions in [0, 1].

    Raises:
        ValueError: unknown family, empty input, mismatched shapes, non-finite values or negative weights.

    Example:
    >>> m = msa_metrics([-1.0, 0.0, 2.0], [-0.4, 0.2, 1.6], family="mosi")
    >>> round(m["mae"], 4), m["has0_acc2"], m["acc7"]
    (0.4, 1.0, 0.6666666666666666)

    Reference: Han et al., 2021 (MMIM) §4.1; DESIGN §3 "Metrics".
    """
    keys = metric_keys(family)
    y, p, w = _validate(y_true, y_pred, sample_weight)
    if str(family).lower() == "sims":
        out = _sims_numpy(y, p, w, undefined)
    else:
        out = _mosi_numpy(y, p, w, undefined)
    return {k: out[k] for k in keys}


def _as_float(values) -> np.ndarray:
    x = np.asarray(values)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    elif x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    return x


def _validate(y_true, y_pred, sample_weight):
    arrays = {}
    for name, a in (("y_true", y_true), ("y_pred", y_pred)):
        x = _as_float(a)
        if x.ndim > 2 or (x.ndim == 2 and x.shape[1] != 1):
            raise ValueError(f"msa_metrics: `{name}` must have shape [N] or [N, 1], got {x.shape}.")
        x = x.reshape(-1)
        bad = int(np.sum(~np.isfinite(x)))
        if bad:
            raise ValueError(
                f"msa_metrics: `{name}` has {bad} non-finite value(s) (NaN/inf) among {x.size}; "
                "metrics on them would be meaningless."
            )
        arrays[name] = x
    y, p = arrays["y_true"], arrays["y_pred"]
    if y.size != p.size:
        raise ValueError(
            f"msa_metrics: `y_true` has {y.size} element(s) (shape {np.shape(y_true)}) but `y_pred` has "
            f"{p.size} (shape {np.shape(y_pred)}); expected the same number of samples."
        )
    if y.size == 0:
        raise ValueError("msa_metrics: empty `y_true`/`y_pred`; expected at least one sample.")
    if sample_weight is None:
        w = np.ones(y.shape, np.float64)
    else:
        w = np.asarray(sample_weight, np.float64)
        w = np.broadcast_to(w.reshape(-1) if w.ndim else w, y.shape).astype(np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("msa_metrics: `sample_weight` must be finite and non-negative.")
        if w.sum() <= 0:
            raise ValueError(
                "msa_metrics: `sample_weight` sums to 0; expected at least one weighted sample."
            )
    return y, p, w


def _warn_undefined(what: str, undefined: float) -> None:
    warnings.warn(f"{what}; returning {undefined!r}.", UndefinedMetricWarning, stacklevel=4)


def _regression_numpy(y, p, w, undefined):
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    total = w.sum()
    mae = float(np.sum(w * np.abs(p64 - y64)) / total)
    used = w > 0
    if np.ptp(p64[used]) == 0 or np.ptp(y64[used]) == 0:
        which = "predictions" if np.ptp(p64[used]) == 0 else "labels"
        _warn_undefined(
            f"corr: the {which} are constant, Pearson correlation is undefined", undefined
        )
        return mae, float(undefined)
    dp = p64 - np.sum(w * p64) / total
    dy = y64 - np.sum(w * y64) / total
    corr = np.sum(w * dp * dy) / (np.sqrt(np.sum(w * dp * dp)) * np.sqrt(np.sum(w * dy * dy)))
    return mae, float(np.clip(corr, -1.0, 1.0))


def _accuracy(t, q, w) -> float:
    return float(np.sum(w * (t == q)) / np.sum(w))


def _mosi_numpy(y, p, w, undefined):
    mae, corr = _regression_numpy(y, p, w, undefined)
    out = {"mae": mae, "corr": corr}
    out["acc7"] = _accuracy(mosi_classes(y, 7), mosi_classes(p, 7), w)
    out["acc5"] = _accuracy(mosi_classes(y, 5), mosi_classes(p, 5), w)
    t, q = (y >= 0).astype(np.int64), (p >= 0).astype(np.int64)
    out["has0_acc2"] = _accuracy(t, q, w)
    out["has0_f1"] = weighted_f1(t, q, num_classes=2, sample_weight=w)
    keep = (y != 0) & (w > 0)
    if not np.any(keep):
        _warn_undefined("non0_acc2/non0_f1: every label is 0, the Non0 subset is empty", undefined)
        out["non0_acc2"] = out["non0_f1"] = float(undefined)
    else:
        t, q = (y[keep] > 0).astype(np.int64), (p[keep] > 0).astype(np.int64)
        out["non0_acc2"] = _accuracy(t, q, w[keep])
        out["non0_f1"] = weighted_f1(t, q, num_classes=2, sample_weight=w[keep])
    return out


def _sims_numpy(y, p, w, undefined):
    mae, corr = _regression_numpy(np.clip(y, -1.0, 1.0), np.clip(p, -1.0, 1.0), w, undefined)
    out = {"mae": mae, "corr": corr}
    for n in (2, 3, 5):
        out[f"acc{n}"] = _accuracy(sims_classes(y, n), sims_classes(p, n), w)
    out["f1"] = weighted_f1(sims_classes(y, 2), sims_classes(p, 2), num_classes=2, sample_weight=w)
    return out
