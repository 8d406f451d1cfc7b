"""Tests of the MSA metric suite (`keras_mmsa.metrics`) against hand-computed cases and sklearn/scipy.

Covered cases:
- hand-computed MOSI table with zeros in the labels (Has0 and Non0 differ), cross-checked with sklearn/scipy;
- rounding ties at .5 are half to even (2.5 -> 2, -0.5 -> -0, 1.5 -> 2, -1.5 -> -2), in numpy, Keras and XLA;
- clipping: p = 3.7 is class 3 for Acc-7 and 2 for Acc-5, MOSI MAE on raw values, SIMS MAE/Corr on clipped;
- all-one-class batches (truth and/or predictions): F1 defined, no crash, equal to sklearn;
- empty Non0 subset and constant inputs for Corr: 0.0 by default with a warning, NaN on request;
- SIMS bin edges -1, -0.7, -0.1, 0, 0.1, 0.7, 1 in the bins of DESIGN §3, for float32 and float64 values;
- F1 argument order (truth, pred): a case where swapping them changes the weighted F1;
- random MOSI/SIMS data against an independent sklearn/scipy reference; sample weights = repetition;
- bad input: clear errors naming the argument; aggregation over seeds (mean ± std) and the formatters;
- the package layout: one module per concern (numpy reference, streaming Keras metric, reporting tables), every
  public name re-exported from `keras_mmsa.metrics`;
- the Keras metric: streaming over uneven batches = numpy on the concatenation (both families, with
  weights), degenerate cases, reset, serialization, float32-stable Pearson, `jit_compile=True`,
  `model.compile(metrics=...)` + `evaluate`/`fit` logs (dict metric and one metric per key).
"""

import json
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from keras_mmsa import metrics as M

# --------------------------------------------------------------------------------------------------------
# helpers: an independent reference built from sklearn / scipy and the DESIGN §3 text
# --------------------------------------------------------------------------------------------------------


def reference_table(y, p, family):
    y = np.asarray(y)
    p = np.asarray(p)
    if family == "sims":
        yc, pc = np.clip(y, -1, 1), np.clip(p, -1, 1)
        one = y.dtype.type

        def bins(x, edges):
            return np.digitize(x, [one(e) for e in edges], right=True)

        return {
            "mae": np.mean(np.abs(pc.astype(np.float64) - yc)),
            "corr": stats.pearsonr(pc.astype(np.float64), yc.astype(np.float64))[0],
            "acc2": accuracy_score(bins(y, [0]), bins(p, [0])),
            "acc3": accuracy_score(bins(y, [-0.1, 0.1]), bins(p, [-0.1, 0.1])),
            "acc5": accuracy_score(
                bins(y, [-0.7, -0.1, 0.1, 0.7]), bins(p, [-0.7, -0.1, 0.1, 0.7])
            ),
            "f1": f1_score(bins(y, [0]), bins(p, [0]), average="weighted"),
        }
    keep = y != 0
    return {
        "mae": np.mean(np.abs(p.astype(np.float64) - y)),
        "corr": stats.pearsonr(p.astype(np.float64), y.astype(np.float64))[0],
        "acc7": accuracy_score(np.round(np.clip(y, -3, 3)), np.round(np.clip(p, -3, 3))),
        "acc5": accuracy_score(np.round(np.clip(y, -2, 2)), np.round(np.clip(p, -2, 2))),
        "has0_acc2": accuracy_score(y >= 0, p >= 0),
        "has0_f1": f1_score(y >= 0, p >= 0, average="weighted"),
        "non0_acc2": accuracy_score(y[keep] > 0, p[keep] > 0),
        "non0_f1": f1_score(y[keep] > 0, p[keep] > 0, average="weighted"),
    }


def random_mosi(rng, n):
    # Labels are means of 3 integer annotations: multiples of 1/3, many exact zeros.
    y = (rng.integers(-9, 10, n) / 3.0).astype(np.float32)
    y[rng.random(n) < 0.1] = 0.0
    p = (0.6 * y + rng.normal(0, 1.2, n)).astype(np.float32)
    p[:8] = [2.5, -0.5, 1.5, -1.5, 0.0, 3.7, -4.2, 0.5]  # ties, an exact 0 and clipped values
    return y, p


def random_sims(rng, n):
    y = (rng.integers(-10, 11, n) / 10.0).astype(np.float32)  # hits the edges ±0.1, ±0.7, 0, ±1
    p = (0.5 * y + rng.normal(0, 0.4, n)).astype(np.float32)
    p[:9] = np.array([-1, -0.7, -0.1, 0, 0.1, 0.7, 1, 1.6, -1.3], np.float32)
    return y, p


def as_floats(result):
    return {k: float(v) for k, v in result.items()}


def assert_tables_close(actual, expected, rtol=1e-6, atol=1e-7):
    assert list(actual) == list(expected)
    for k in expected:
        np.testing.assert_allclose(
            float(actual[k]), float(expected[k]), rtol=rtol, atol=atol, err_msg=k
        )


# --------------------------------------------------------------------------------------------------------
# Package layout
# --------------------------------------------------------------------------------------------------------


def test_one_module_per_concern_and_public_names_reexported():
    from keras_mmsa.metrics import reference, reporting, streaming

    homes = {
        reference: ("msa_metrics", "metric_keys", "mosi_classes", "sims_classes", "weighted_f1"),
        streaming: ("MSAMetrics", "MSAMetric", "msa_keras_metrics"),
        reporting: ("aggregate_runs", "format_paper", "format_markdown"),
    }
    for module, names in homes.items():
        for name in names:
            assert getattr(M, name) is getattr(module, name), name
            assert getattr(module, name).__module__ == module.__name__, name
    assert all(hasattr(M, name) for name in M.__all__)
    # Saved models name the metric by its registered name, which the move kept.
    assert keras.saving.get_registered_name(M.MSAMetrics) == "keras_mmsa>MSAMetrics"
    assert keras.saving.get_registered_name(M.MSAMetric) == "keras_mmsa>MSAMetric"


# --------------------------------------------------------------------------------------------------------
# numpy form: hand-computed cases
# --------------------------------------------------------------------------------------------------------


def test_metric_keys_and_unknown_family():
    assert M.metric_keys("mosi") == M.metric_keys("MOSEI") == M.MOSI_KEYS
    assert M.metric_keys("sims") == ("mae", "corr", "acc2", "acc3", "acc5", "f1")
    with pytest.raises(ValueError, match="Unknown metric family 'iemocap'"):
        M.metric_keys("iemocap")
    with pytest.raises(ValueError, match="Unknown metric family"):
        M.msa_metrics([1.0], [1.0], family="iemocap")


def test_zeros_in_labels_has0_and_non0_differ():
    y = [-1.0, 0.0, 0.0, 2.0]
    p = [-0.5, 0.3, -0.2, 1.0]
    m = M.msa_metrics(y, p, family="mosi")
    assert list(m) == list(M.MOSI_KEYS)
    # MAE = (0.5 + 0.3 + 0.2 + 1.0) / 4 = 0.5
    assert m["mae"] == pytest.approx(0.5)
    # Pearson: mean y = 0.25, mean p = 0.15; dy = [-1.25, -.25, -.25, 1.75], dp = [-.65, .15, -.35, .85]
    # sum dp*dy = 2.35, sum dy^2 = 4.75, sum dp^2 = 1.29 -> 2.35 / sqrt(4.75 * 1.29)
    assert m["corr"] == pytest.approx(2.35 / math.sqrt(4.75 * 1.29))
    # Acc-7: y -> [-1, 0, 0, 2], p -> round([-0.5, 0.3, -0.2, 1.0]) = [-0, 0, -0, 1]: 2 of 4 correct
    assert m["acc7"] == pytest.approx(0.5)
    # Has0: truth y >= 0 = [0, 1, 1, 1], pred p >= 0 = [0, 1, 0, 1]: 3 of 4
    assert m["has0_acc2"] == pytest.approx(0.75)
    # F1 negative: TP 1, FP 1 (sample 2), FN 0 -> 2/3 (support 1); positive: TP 2, FN 1 -> 4/5 (support 3)
    # weighted = (1 * 2/3 + 3 * 4/5) / 4 = 23/30
    assert m["has0_f1"] == pytest.approx(23 / 30)
    # Non0 drops the two zero labels: truth [0, 1], pred [0, 1] -> perfect
    assert m["non0_acc2"] == 1.0 and m["non0_f1"] == 1.0
    ref = reference_table(np.array(y), np.array(p), "mosi")
    assert_tables_close(m, ref)


def test_rounding_ties_are_half_to_even():
    ties = np.array([2.5, -0.5, 1.5, -1.5, 0.5, -2.5])
    # half to even: 2, -0, 2, -2, 0, -2 -> classes (value + 3)
    np.testing.assert_array_equal(M.mosi_classes(ties, 7), [5, 3, 5, 1, 3, 1])
    np.testing.assert_array_equal(M.mosi_classes(ties.astype(np.float32), 7), [5, 3, 5, 1, 3, 1])
    y = [2.0, 0.0, 2.0, 1.0, -2.0, -2.0]
    p = [2.5, -0.5, 1.5, 0.5, -2.5, -1.5]
    # half to even: p -> [2, -0, 2, 0, -2, -2] vs y [2, 0, 2, 1, -2, -2]: 5 of 6.
    # (half away from zero would give 3/6 and floor(p + 0.5) 4/6, so this pins the rounding rule.)
    assert M.msa_metrics(y, p)["acc7"] == pytest.approx(5 / 6)


def test_clipping_mosi_classes_but_raw_mae():
    y = [3.0, 2.0, -3.0]
    p = [3.7, 3.7, -5.0]
    m = M.msa_metrics(y, p, family="mosi")
    np.testing.assert_array_equal(M.mosi_classes([3.7], 7), [6])  # class of +3
    np.testing.assert_array_equal(M.mosi_classes([3.7], 5), [4])  # class of +2
    # Acc-7: p -> [3, 3, -3] vs y [3, 2, -3]: 2 of 3.  Acc-5: p -> [2, 2, -2], y -> [2, 2, -2]: 3 of 3.
    assert m["acc7"] == pytest.approx(2 / 3)
    assert m["acc5"] == 1.0
    # MAE on raw values: (0.7 + 1.7 + 2.0) / 3 = 4.4 / 3 (clipped values would give 1/3)
    assert m["mae"] == pytest.approx(4.4 / 3)


def test_clipping_sims_mae_and_corr():
    y = [1.0, 0.5, -1.0]
    p = [1.7, 3.0, -1.2]
    m = M.msa_metrics(y, p, family="sims")
    # clipped p = [1, 1, -1]: MAE = (0 + 0.5 + 0) / 3 = 1/6 (raw values would give 3.4 / 3)
    assert m["mae"] == pytest.approx(1 / 6)
    # Corr on clipped values: pearson([1, 1, -1], [1, .5, -1]):
    # means 1/3 and 1/6; dp = [2/3, 2/3, -4/3], dy = [5/6, 1/3, -7/6]
    # sum dp dy = 5/9 + 2/9 + 14/9 = 21/9; sum dp^2 = 24/9; sum dy^2 = (25 + 4 + 49)/36 = 78/36
    assert m["corr"] == pytest.approx((21 / 9) / math.sqrt(24 / 9 * 78 / 36))
    assert m["corr"] != pytest.approx(stats.pearsonr(p, y)[0])


@pytest.mark.parametrize(
    "y, p, acc, f1",
    [
        # all positive, all predicted positive: perfect
        ([1.0, 2.0, 0.5], [0.3, 2.5, 1.0], 1.0, 1.0),
        # all positive, all predicted negative: positive F1 = 0/(0+0+3) = 0, negative has no support -> 0
        ([1.0, 2.0, 0.5], [-1.0, -1.0, -1.0], 0.0, 0.0),
        # all negative truth, mixed predictions: negative TP 1, FN 2 -> F1 2/(2+2) = 0.5, weight 3/3
        ([-1.0, -2.0, -0.5], [-1.0, 1.0, 2.0], 1 / 3, 0.5),
        # mixed truth, one predicted class: acc 2/4; neg F1 0; pos TP 2, FP 2 -> 4/6, weight 2/4
        ([-1.0, -2.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0], 0.5, 0.5 * 4 / 6),
    ],
)
def test_all_one_class_batches(y, p, acc, f1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)  # the last case has constant p
        m = M.msa_metrics(y, p)
    assert m["has0_acc2"] == pytest.approx(acc) and m["non0_acc2"] == pytest.approx(acc)
    assert m["has0_f1"] == pytest.approx(f1) and m["non0_f1"] == pytest.approx(f1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's own zero-division warnings
        assert f1 == pytest.approx(f1_score(np.array(y) > 0, np.array(p) > 0, average="weighted"))
    assert all(np.isfinite(v) for v in m.values())


def test_empty_non0_subset_is_defined():
    y, p = [0.0, 0.0, 0.0], [0.4, -0.2, 1.0]
    with pytest.warns(M.UndefinedMetricWarning) as record:
        m = M.msa_metrics(y, p)
    messages = " ".join(str(r.message) for r in record)
    assert "Non0 subset is empty" in messages and "labels are constant" in messages
    assert m["non0_acc2"] == 0.0 and m["non0_f1"] == 0.0
    # Has0 is still defined: truth all non-negative, pred [1, 0, 1] -> 2/3; F1 pos: TP 2, FN 1 -> 4/5
    assert m["has0_acc2"] == pytest.approx(2 / 3) and m["has0_f1"] == pytest.approx(0.8)
    with pytest.warns(M.UndefinedMetricWarning):
        m = M.msa_metrics(y, p, undefined=float("nan"))
    assert math.isnan(m["non0_acc2"]) and math.isnan(m["non0_f1"])
    assert math.isnan(m["corr"])  # labels are constant too
    assert np.isfinite(m["mae"]) and np.isfinite(m["has0_f1"])


@pytest.mark.parametrize("family", ["mosi", "sims"])
def test_constant_inputs_corr_is_defined(family):
    y = [0.2, -0.4, 0.8, 0.6]
    p = [
        0.1,
        0.1,
        0.1,
        0.1,
    ]  # mean of four 0.1 is not exactly 0.1 in floating point: a naive check fails
    with pytest.warns(M.UndefinedMetricWarning, match="predictions are constant"):
        m = M.msa_metrics(y, p, family=family)
    assert m["corr"] == 0.0
    with pytest.warns(M.UndefinedMetricWarning, match="labels are constant"):
        assert math.isnan(M.msa_metrics(p, y, family=family, undefined=float("nan"))["corr"])
    if family == "sims":  # constant only after clipping to [-1, 1]
        with pytest.warns(M.UndefinedMetricWarning):
            assert M.msa_metrics(y, [1.5, 2.0, 1.0, 3.0], family="sims")["corr"] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_bin_edges(dtype):
    edges = np.array([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0], dtype)
    # Acc-2: [-1, 0] | (0, 1]
    np.testing.assert_array_equal(M.sims_classes(edges, 2), [0, 0, 0, 0, 1, 1, 1])
    # Acc-3: [-1, -0.1] | (-0.1, 0.1] | (0.1, 1]
    np.testing.assert_array_equal(M.sims_classes(edges, 3), [0, 0, 0, 1, 1, 2, 2])
    # Acc-5: [-1, -0.7] | (-0.7, -0.1] | (-0.1, 0.1] | (0.1, 0.7] | (0.7, 1]
    np.testing.assert_array_equal(M.sims_classes(edges, 5), [0, 0, 1, 2, 2, 3, 4])
    # End to end: a float32 label 0.1 and prediction 0.05 share the bin (-0.1, 0.1] (a float64 edge
    # compared with float32(0.1) = 0.10000000149 would wrongly move the label up a bin).
    m = M.msa_metrics(np.array([0.1, -0.7], dtype), np.array([0.05, -0.75], dtype), family="sims")
    assert m["acc3"] == 1.0 and m["acc5"] == 1.0
    m = M.msa_metrics(np.array([0.1, -0.7], dtype), np.array([0.15, -0.65], dtype), family="sims")
    # 0.15 is in (0.1, 0.7] (Acc-3 class 2, Acc-5 class 3); -0.65 is in (-0.7, -0.1] (Acc-3 class 0 like
    # -0.7, Acc-5 class 1): Acc-3 = 1/2, Acc-5 = 0/2
    assert m["acc3"] == 0.5 and m["acc5"] == 0.0


def test_f1_argument_order_is_truth_then_pred():
    y = [-1.0, -1.0, -1.0, 1.0, 1.0]
    p = [-1.0, 1.0, 1.0, 1.0, 1.0]
    # F1 negative: TP 1, FN 2, FP 0 -> 2/4 = 1/2; positive: TP 2, FP 2, FN 0 -> 4/6 = 2/3.
    # weighted by TRUTH support (3, 2): (3/2 + 4/3) / 5 = 17/30.
    # weighted by PRED support (1, 4), i.e. arguments swapped: (1/2 + 8/3) / 5 = 19/30.
    m = M.msa_metrics(y, p)
    assert m["non0_f1"] == pytest.approx(17 / 30) and m["has0_f1"] == pytest.approx(17 / 30)
    assert M.msa_metrics(p, y)["non0_f1"] == pytest.approx(19 / 30)
    t, q = np.array(y) > 0, np.array(p) > 0
    assert f1_score(t, q, average="weighted") == pytest.approx(17 / 30)
    assert M.weighted_f1(t, q, num_classes=2) == pytest.approx(17 / 30)


def test_sims_hand_case():
    y = np.array([-0.8, -0.1, 0.0, 0.4, 1.0], np.float32)
    p = np.array([-0.6, -0.3, 0.2, 0.9, 0.8], np.float32)
    m = M.msa_metrics(y, p, family="sims")
    assert list(m) == list(M.SIMS_KEYS)
    # MAE = (0.2 + 0.2 + 0.2 + 0.5 + 0.2) / 5 = 0.26
    assert m["mae"] == pytest.approx(0.26, rel=1e-6)
    # Acc-2: y -> [0, 0, 0, 1, 1], p -> [0, 0, 1, 1, 1]: 4/5
    assert m["acc2"] == pytest.approx(0.8)
    # Acc-3: y -> [0, 0, 1, 2, 2], p -> [0, 0, 2, 2, 2]: 4/5
    assert m["acc3"] == pytest.approx(0.8)
    # Acc-5: y -> [0, 1, 2, 3, 4], p -> [1, 1, 3, 4, 4]: 2/5
    assert m["acc5"] == pytest.approx(0.4)
    # F1 class 0: TP 2, FN 1 -> 4/5 (support 3); class 1: TP 2, FP 1 -> 4/5 (support 2) -> 0.8
    assert m["f1"] == pytest.approx(0.8)
    assert_tables_close(m, reference_table(y, p, "sims"), rtol=1e-5)


@pytest.mark.parametrize("family, n", [("mosi", 401), ("sims", 333)])
def test_random_data_matches_sklearn_scipy(family, n):
    rng = np.random.default_rng(7)
    y, p = random_mosi(rng, n) if family == "mosi" else random_sims(rng, n)
    m = M.msa_metrics(y, p, family=family)
    assert_tables_close(m, reference_table(y, p, family), rtol=1e-9, atol=1e-12)
    # [N, 1] inputs (a Dense(1) head) give the same table
    assert M.msa_metrics(y[:, None], p[:, None], family=family) == m


def test_sample_weight_is_repetition_and_zero_drops():
    rng = np.random.default_rng(3)
    y, p = random_mosi(rng, 60)
    w = rng.integers(0, 4, 60)
    w[:3] = [0, 2, 3]
    repeated = M.msa_metrics(np.repeat(y, w), np.repeat(p, w))
    assert_tables_close(M.msa_metrics(y, p, sample_weight=w), repeated, rtol=1e-9, atol=1e-12)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match=r"`y_true` has 3 element\(s\).*`y_pred` has 2"):
        M.msa_metrics([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"`y_pred` has 1 non-finite"):
        M.msa_metrics([1.0, 2.0], [np.nan, 2.0])
    with pytest.raises(ValueError, match=r"`y_true` has 1 non-finite"):
        M.msa_metrics([np.inf, 2.0], [1.0, 2.0])
    with pytest.raises(
        ValueError, match=r"`y_pred` must have shape \[N\] or \[N, 1\], got \(2, 3\)"
    ):
        M.msa_metrics(np.zeros(6), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        M.msa_metrics([], [])
    with pytest.raises(ValueError, match="non-negative"):
        M.msa_metrics([1.0, 2.0], [1.0, 2.0], sample_weight=[1.0, -1.0])


def test_aggregate_runs_mean_std():
    runs = [
        {"mae": 0.70, "corr": 0.80, "acc2": 0.84},
        {"mae": 0.72, "corr": 0.78, "acc2": 0.86},
        {"mae": 0.74, "corr": 0.79, "acc2": 0.85},
    ]
    agg = M.aggregate_runs(runs)
    assert list(agg) == ["mae", "corr", "acc2"]
    # mae: mean 0.72, deviations ±0.02, 0 -> population std sqrt(0.0008 / 3)
    assert agg["mae"]["mean"] == pytest.approx(0.72)
    assert agg["mae"]["std"] == pytest.approx(math.sqrt(0.0008 / 3))
    # sample std (ddof=1): sqrt(0.0008 / 2) = 0.02
    assert M.aggregate_runs(runs, ddof=1)["mae"]["std"] == pytest.approx(0.02)
    assert M.aggregate_runs(runs[:1])["acc2"] == {"mean": 0.84, "std": 0.0}
    with pytest.raises(ValueError, match="ddof=1 needs more than 1"):
        M.aggregate_runs(runs[:1], ddof=1)
    with pytest.raises(ValueError, match="run 1 has keys"):
        M.aggregate_runs([runs[0], {"mae": 0.1}])
    json.dumps(agg)  # plain floats, ready for metrics.json


def test_formatters():
    m = {
        "mae": 0.7001,
        "corr": 0.8,
        "acc7": 0.4665,
        "acc5": 0.52,
        "has0_acc2": 0.8414,
        "has0_f1": 0.84,
        "non0_acc2": 0.8606,
        "non0_f1": 0.8598,
    }
    line = M.format_paper(m)
    assert line == (
        "MAE 0.700 | Corr 0.800 | Acc-7 46.65 | Acc-5 52.00 | Acc-2 84.14/86.06 | F1 84.00/85.98"
    )
    agg = M.aggregate_runs([m, {**m, "has0_acc2": 0.8514}])
    assert "Acc-2 84.64 ± 0.50/86.06 ± 0.00" in M.format_paper(agg)
    table = M.format_markdown({"MMIM": agg, "baseline": m})
    lines = table.splitlines()
    assert lines[0] == "| run | MAE | Corr | Acc-7 | Acc-5 | Acc-2 (Has0/Non0) | F1 (Has0/Non0) |"
    assert lines[3].startswith("| baseline | 0.700 | 0.800 | 46.65 |")
    flat = M.format_markdown(m, paper_layout=False).splitlines()
    assert flat[0].count("|") == 9 and "Non0 F1" in flat[0] and flat[2].endswith("| 85.98 |")
    with pytest.raises(ValueError):
        M.format_markdown(
            {
                "a": m,
                "b": {"mae": 0.1, "corr": 0.2, "acc2": 0.5, "acc3": 0.4, "acc5": 0.3, "f1": 0.2},
            }
        )


# --------------------------------------------------------------------------------------------------------
# Keras form
# --------------------------------------------------------------------------------------------------------


def stream(metric, y, p, sizes, w=None):
    metric.reset_state()
    start = 0
    for size in sizes:
        sl = slice(start, start + size)
        metric.update_state(y[sl], p[sl], sample_weight=None if w is None else w[sl])
        start += size
    assert start == len(y)
    return as_floats(metric.result())


@pytest.mark.parametrize("family", ["mosi", "sims"])
def test_keras_streaming_equals_numpy_on_concatenation(family):
    rng = np.random.default_rng(11)
    n = 170
    y, p = random_mosi(rng, n) if family == "mosi" else random_sims(rng, n)
    metric = M.MSAMetrics(family=family)
    sizes = [7, 64, 1, 29, 69]
    assert_tables_close(
        stream(metric, y, p[:, None], sizes), M.msa_metrics(y, p, family=family), rtol=2e-5
    )
    # weights, including zero weights that mask padding
    w = rng.integers(0, 3, n).astype(np.float32)
    got = stream(metric, y, p, sizes, w)
    assert_tables_close(got, M.msa_metrics(y, p, family=family, sample_weight=w), rtol=2e-5)


def test_keras_degenerate_cases_match_numpy():
    metric = M.MSAMetrics()
    # nothing seen yet: every key is the `undefined` value, no NaN
    assert as_floats(metric.result()) == dict.fromkeys(M.MOSI_KEYS, 0.0)
    # all-zero labels (empty Non0), constant predictions over two batches
    y = np.zeros(6, np.float32)
    p = np.full(6, 0.1, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.UndefinedMetricWarning)
        expected = M.msa_metrics(y, p)
        expected_nan = M.msa_metrics(y, p, undefined=float("nan"))
    assert_tables_close(stream(metric, y, p, [4, 2]), expected)
    got = stream(M.MSAMetrics(undefined=float("nan")), y, p, [4, 2])
    for k in M.MOSI_KEYS:
        assert math.isnan(got[k]) == math.isnan(expected_nan[k]), k
    assert math.isnan(got["corr"]) and math.isnan(got["non0_f1"]) and got["has0_acc2"] == 1.0
    # one class only: truth all positive, predictions all negative
    got = stream(metric, np.array([1.0, 2.0, 0.5]), np.array([-1.0, -2.0, -0.1]), [2, 1])
    assert (
        got["has0_f1"] == 0.0
        and got["non0_acc2"] == 0.0
        and got["corr"]
        == pytest.approx(stats.pearsonr([-1.0, -2.0, -0.1], [1.0, 2.0, 0.5])[0], rel=1e-5)
    )


def test_keras_pearson_is_stable_in_float32():
    # Labels with a large offset and small spread: raw float32 sums of squares would cancel (1e6 vs 1e-2).
    rng = np.random.default_rng(5)
    y = (1000.0 + 0.1 * rng.normal(size=1280)).astype(np.float32)
    p = (y + 0.05 * rng.normal(size=1280)).astype(np.float32)
    got = stream(M.MSAMetrics(), y, p, [64] * 20)["corr"]
    want = stats.pearsonr(p.astype(np.float64), y.astype(np.float64))[0]
    assert got == pytest.approx(want, rel=1e-4)


def test_keras_under_jit_compile():
    metric = M.MSAMetrics(family="mosi")

    @tf.function(jit_compile=True)
    def step(y, p):
        metric.update_state(y, p)
        return metric.result()

    y = np.array([2.0, 0.0, 2.0, 1.0, -2.0, -2.0, 3.0, 2.0], np.float32)
    p = np.array([2.5, -0.5, 1.5, 0.5, -2.5, -1.5, 3.7, 3.7], np.float32)
    step(y[:4], p[:4])
    out = as_floats(step(y[4:], p[4:]))
    assert_tables_close(out, M.msa_metrics(y, p), rtol=1e-6)
    # half-to-even ties under XLA: 6 of the 8 are right for Acc-7 (p 0.5 -> 0 vs 1, 3.7 -> 3 vs 2)
    assert out["acc7"] == pytest.approx(6 / 8)

    sims = M.MSAMetrics(family="sims")

    @tf.function(jit_compile=True)
    def sims_step(y, p):
        sims.update_state(y, p)
        return sims.result()

    edges = np.array([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0], np.float32)
    # one value inside the same bin as each edge, for every scheme (see test_sims_bin_edges)
    inside = np.array([-0.9, -0.75, -0.5, -0.05, 0.05, 0.2, 0.75], np.float32)
    out = as_floats(sims_step(edges, inside))
    assert out["acc2"] == out["acc3"] == out["acc5"] == 1.0
    # and 0.05 upwards from each edge, where the edge value is the top of its bin:
    sims.reset_state()
    across = as_floats(sims_step(edges, edges + np.float32(0.05)))
    assert_tables_close(
        across, M.msa_metrics(edges, edges + np.float32(0.05), family="sims"), rtol=1e-6
    )
    # Acc-5: -1 -> -0.95 (bin [-1, -0.7]), 0 -> 0.05 (bin (-0.1, 0.1]) and 1 -> 1.05 (clipped) stay; -0.7,
    # -0.1, 0.1 and 0.7 move up a bin: 3/7.  Acc-2: 0 -> 0.05 moves to (0, 1], the rest stay: 6/7.
    assert across["acc5"] == pytest.approx(3 / 7) and across["acc2"] == pytest.approx(6 / 7)


def tiny_regression_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.clip(x @ np.array([1.0, -0.5, 0.8, 0.0], np.float32) + 0.3, -3, 3).astype(np.float32)
    y[:5] = 0.0
    return x, y


def test_keras_compile_evaluate_and_fit_logs():
    keras.utils.set_random_seed(0)
    x, y = tiny_regression_data()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(
        optimizer="sgd", loss="mse", metrics=[M.MSAMetrics(family="mosi")], jit_compile=True
    )
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    expected = M.msa_metrics(y, model.predict(x, verbose=0), family="mosi")
    assert set(M.MOSI_KEYS) <= set(logs)  # the dict result is flattened into one log entry per key
    assert_tables_close({k: logs[k] for k in M.MOSI_KEYS}, expected, rtol=1e-5)
    history = model.fit(x, y, batch_size=16, epochs=1, validation_data=(x, y), verbose=0)
    assert {"val_mae", "val_non0_f1", "acc7"} <= set(history.history)

    # One scalar metric per key: each is its own entry, under its own name.
    model.compile(
        optimizer="sgd", loss="mse", metrics=M.msa_keras_metrics("mosi"), jit_compile=True
    )
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    expected = M.msa_metrics(y, model.predict(x, verbose=0), family="mosi")
    assert_tables_close({k: logs[k] for k in M.MOSI_KEYS}, expected, rtol=1e-5)


def test_keras_serialization_and_reset():
    metric = M.MSAMetrics(family="sims", undefined=float("nan"), name="sims_table")
    config = metric.get_config()
    assert (
        config["family"] == "sims"
        and math.isnan(config["undefined"])
        and config["name"] == "sims_table"
    )
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(clone) is M.MSAMetrics and clone.keys == M.SIMS_KEYS and clone.name == "sims_table"
    single = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(M.MSAMetric("non0_f1", family="mosei"))
    )
    assert type(single) is M.MSAMetric and single.key == "non0_f1" and single.name == "non0_f1"
    with pytest.raises(ValueError, match="unknown key 'acc7' for family 'sims'"):
        M.MSAMetric("acc7", family="sims")

    y = np.array([0.3, -0.6, 0.9], np.float32)
    p = np.array([0.1, -0.2, 0.5], np.float32)
    fresh = as_floats(M.MSAMetrics(family="sims").result())
    m = M.MSAMetrics(family="sims")
    m.update_state(np.array([5.0, -5.0]), np.array([1.0, 1.0]))
    m.reset_state()
    assert as_floats(m.result()) == fresh  # min/max trackers back to ±inf, sums to 0
    m.update_state(y, p)
    assert_tables_close(as_floats(m.result()), M.msa_metrics(y, p, family="sims"), rtol=1e-6)
    with pytest.raises(ValueError, match="y_true has 3 element.*y_pred has 2"):
        m.update_state(y, p[:2])
