"""The MSA metric suite: the field's regression and classification metrics for MOSI/MOSEI and SIMS.

Two forms compute exactly the same numbers (DESIGN §3 "Metrics"):

- `msa_metrics(y_true, y_pred, family=...)`: numpy, on whole arrays, returns a `dict` of Python floats;
- `MSAMetrics` (all keys, `result()` is a dict) and `MSAMetric` (one key) / `msa_keras_metrics(family)`: Keras
  metrics with streaming state, usable in `model.compile(metrics=...)`, `evaluate` and a custom `test_step`
  under `jit_compile=True`.

Keys (stable, in this order; `metric_keys(family)`):

| family          | keys                                                                        |
|-----------------|-----------------------------------------------------------------------------|
| `mosi`, `mosei` | `mae, corr, acc7, acc5, has0_acc2, has0_f1, non0_acc2, non0_f1`             |
| `sims`          | `mae, corr, acc2, acc3, acc5, f1`                                           |

Units: every value is returned as a *fraction* (accuracy 0.8614, F1 0.8598, like scikit-learn and Keras); MAE
and Corr are raw. Only the formatters (`format_paper`, `format_markdown`) print accuracies and F1 as
percentages, as the papers do ("Acc-2 86.14/85.98").

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
- In the Keras form, every key before any sample has been seen.

Batches whose truth or predictions hold only one class are fine: a class absent from the truth gets weight 0
in the weighted F1 and a class with no true or predicted sample has F1 0 (scikit-learn's `zero_division=0`),
so "all positive, all predicted negative" gives F1 0.0 and "all positive, all predicted positive" gives 1.0.

`sample_weight` (both forms) weights each sample (all counts, sums and the Pearson moments are weighted);
a weight of 0 removes a sample, e.g. padding in a fixed-shape last batch. Integer weights equal repetition.

Reference: DESIGN §3 "Metrics"; Han et al., 2021 (MMIM), §4.1 "Datasets and Metrics" and Table 2 (Acc-2/F1
printed as non-negative/negative "/" positive/negative); Yu et al., 2020 (CH-SIMS) for the SIMS bins.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import keras
import numpy as np
from keras import ops

MOSI_KEYS = ("mae", "corr", "acc7", "acc5", "has0_acc2", "has0_f1", "non0_acc2", "non0_f1")
SIMS_KEYS = ("mae", "corr", "acc2", "acc3", "acc5", "f1")
FAMILIES = {"mosi": MOSI_KEYS, "mosei": MOSI_KEYS, "sims": SIMS_KEYS}

# SIMS bin edges: a value v is in class sum(v > edge), so every bin is open below and closed above
# (the lowest one is closed below at -1 too, after clipping).
SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}
# MOSI/MOSEI rounding classes: clip to [-r, r] and round, so class index = round(clip(v)) + r.
MOSI_RANGES = {7: 3.0, 5: 2.0}

# How each key is printed by the formatters, and whether it is a percentage.
DISPLAY_NAMES = {
    "mae": "MAE",
    "corr": "Corr",
    "acc7": "Acc-7",
    "acc5": "Acc-5",
    "acc3": "Acc-3",
    "acc2": "Acc-2",
    "f1": "F1",
    "has0_acc2": "Has0 Acc-2",
    "has0_f1": "Has0 F1",
    "non0_acc2": "Non0 Acc-2",
    "non0_f1": "Non0 F1",
}
RAW_KEYS = ("mae", "corr")


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


# ---------------------------------------------------------------------------------------------------------
# numpy form
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Several runs (seeds), formatting
# ---------------------------------------------------------------------------------------------------------


def aggregate_runs(
    runs: Sequence[Mapping[str, float]], *, ddof: int = 0
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over several runs (e.g. 5 seeds, MMSA's 1111-1115).

    Args:
        runs: metric dicts (as `msa_metrics` returns), all with the same keys.
        ddof: delta degrees of freedom of the std. 0 (population std, `np.std`'s default) is what MMSA
            prints as "mean ± std"; 1 gives the sample std (needs at least 2 runs).

    Returns:
        `{key: {"mean": float, "std": float}}` in the key order of the first run (fractions, as the input).
        A NaN in any run (only possible with `undefined=nan`) makes that key's mean and std NaN.

    Example:
    >>> agg = aggregate_runs([{"mae": 0.7, "corr": 0.8}, {"mae": 0.9, "corr": 0.6}])
    >>> round(agg["mae"]["mean"], 6), round(agg["mae"]["std"], 6)
    (0.8, 0.1)
    """
    runs = list(runs)
    if not runs:
        raise ValueError("aggregate_runs: expected at least one run.")
    if ddof >= len(runs):
        raise ValueError(
            f"aggregate_runs: ddof={ddof} needs more than {ddof} run(s), got {len(runs)}."
        )
    keys = list(runs[0])
    for i, run in enumerate(runs):
        if list(run) != keys:
            raise ValueError(
                f"aggregate_runs: run {i} has keys {list(run)}, run 0 has {keys}; "
                "aggregate runs of the same dataset family only."
            )
    out = {}
    for k in keys:
        values = np.asarray([float(run[k]) for run in runs], np.float64)
        out[k] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=ddof))}
    return out


def _is_single_result(results) -> bool:
    return isinstance(results, Mapping) and "mae" in results


def _format_value(key, value, pct_digits, raw_digits) -> str:
    scale, digits = (1.0, raw_digits) if key in RAW_KEYS else (100.0, pct_digits)
    if isinstance(value, Mapping):
        mean, std = value["mean"] * scale, value["std"] * scale
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{float(value) * scale:.{digits}f}"


def _paper_cells(result, pct_digits, raw_digits) -> list[tuple[str, str]]:
    """(header, cell) pairs in paper layout: Has0/Non0 pairs merged into "a/b" cells."""

    def fmt(k):
        return _format_value(k, result[k], pct_digits, raw_digits)

    if "has0_acc2" in result:
        cells = [(DISPLAY_NAMES[k], fmt(k)) for k in ("mae", "corr", "acc7", "acc5") if k in result]
        cells.append(("Acc-2 (Has0/Non0)", f"{fmt('has0_acc2')}/{fmt('non0_acc2')}"))
        cells.append(("F1 (Has0/Non0)", f"{fmt('has0_f1')}/{fmt('non0_f1')}"))
        return cells
    return [(DISPLAY_NAMES.get(k, k), fmt(k)) for k in result]


def format_paper(result, *, pct_digits: int = 2, raw_digits: int = 3) -> str:
    """One line in the papers' style: MAE and Corr raw, accuracies/F1 in percent, Acc-2 and F1 as Has0/Non0.

    Args:
        result: a metric dict (`msa_metrics`) or an aggregate (`aggregate_runs`, printed "mean ± std").
        pct_digits: decimals of the percentages.
        raw_digits: decimals of MAE and Corr.

    Example:
    >>> format_paper({"mae": 0.7, "corr": 0.8, "acc7": 0.4665, "acc5": 0.52,
    ...               "has0_acc2": 0.8414, "has0_f1": 0.84, "non0_acc2": 0.8606, "non0_f1": 0.8598})
    'MAE 0.700 | Corr 0.800 | Acc-7 46.65 | Acc-5 52.00 | Acc-2 84.14/86.06 | F1 84.00/85.98'
    """
    if not _is_single_result(result):
        raise ValueError(
            "format_paper: expected one metric dict (with a 'mae' key) or one aggregate."
        )
    cells = _paper_cells(result, pct_digits, raw_digits)
    return " | ".join(f"{h.split(' (')[0]} {c}" for h, c in cells)


def format_markdown(
    results, *, paper_layout: bool = True, pct_digits: int = 2, raw_digits: int = 3
) -> str:
    """A markdown table of one result or of several named results (rows).

    Args:
        results: a metric dict / aggregate (one row), or a mapping `{row name: metric dict or aggregate}`.
        paper_layout: True merges Has0/Non0 into "a/b" columns as the papers print them; False gives one
            column per key.
        pct_digits: decimals of the percentages (accuracies, F1).
        raw_digits: decimals of MAE and Corr.

    Example:
    >>> print(format_markdown({"mae": 0.71, "corr": 0.79, "acc2": 0.8, "acc3": 0.65, "acc5": 0.4, "f1": 0.79}))
    | MAE | Corr | Acc-2 | Acc-3 | Acc-5 | F1 |
    |---|---|---|---|---|---|
    | 0.710 | 0.790 | 80.00 | 65.00 | 40.00 | 79.00 |
    """
    rows = {"": results} if _is_single_result(results) else dict(results)
    if not rows or not all(_is_single_result(r) for r in rows.values()):
        raise ValueError(
            "format_markdown: expected a metric dict, an aggregate, or {name: one of those}."
        )
    table = []
    for name, result in rows.items():
        if paper_layout:
            cells = _paper_cells(result, pct_digits, raw_digits)
        else:
            cells = [
                (DISPLAY_NAMES.get(k, k), _format_value(k, v, pct_digits, raw_digits))
                for k, v in result.items()
            ]
        table.append((name, cells))
    headers = [h for h, _ in table[0][1]]
    for name, cells in table:
        if [h for h, _ in cells] != headers:
            raise ValueError(f"format_markdown: row {name!r} has other metrics than the first row.")
    named = any(name for name, _ in table)
    head = (["run"] if named else []) + headers
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, cells in table:
        row = ([str(name)] if named else []) + [c for _, c in cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Keras form
# ---------------------------------------------------------------------------------------------------------


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
        family: `"mosi"`, `"mosei"` or `"sims"`; selects the keys and definitions (module docstring).
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
