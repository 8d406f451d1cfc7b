"""Reporting tables of MSA metrics: mean and std over runs (seeds), the papers' one-line and markdown tables.

Values are fractions in (as `keras_mmsa.metrics.msa_metrics` returns them); the formatters print accuracies and F1
as percentages and MAE and Corr raw, as the papers do ("Acc-2 86.14/85.98").

Reference: Han et al., 2021 (MMIM), Table 2 (Acc-2/F1 printed as non-negative/negative "/" positive/negative).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# How each key is printed by the formatters; RAW_KEYS are printed as they are, the others as percentages.
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
