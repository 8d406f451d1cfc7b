"""Paired comparison of two configurations over seeds: mean ± std per metric and the Mann–Whitney U test.

The paper's protocol (MDM, Colombo et al. 2021, Tables 1-2): a model trained with and without the dependency
penalty over several seeds, a result underlined when the Wilcoxon–Mann–Whitney test gives p < 0.05.
`compare_configs(config, baseline, seeds, workdir)` trains both arms on the same seeds (one run directory per
arm and seed, named as `train.py --seeds` names them, so finished runs are reused) and writes the table;
`mann_whitney_u` is the test in numpy (no scipy needed), with scipy's conventions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from keras_mmsa import metrics

# The baseline of each method, as `--set` overrides of its configuration ("the same model without the penalty").
BASELINES = {"mdm": ("model.penalty=none",)}


def mann_whitney_u(x, y, *, method="auto"):
    """Two-sided Wilcoxon–Mann–Whitney U test of two independent samples.

    Same conventions as `scipy.stats.mannwhitneyu(x, y, alternative="two-sided")`: the statistic is U1, the
    number of pairs (x_i, y_j) with x_i > y_j plus half the ties; `method="auto"` uses the exact null
    distribution when one sample has at most 8 values and there are no ties, else the normal approximation
    with the tie correction of the variance and a continuity correction.

    Args:
        x, y: 1-D sequences of finite numbers (at least one value each).
        method: "auto", "exact" or "asymptotic".

    Returns:
        `(U1, p)` as Python floats.

    Example:
    >>> mann_whitney_u([1, 2, 3], [4, 5, 6])  # (0.0, 0.1)
    (0.0, 0.1)

    Reference: Mann & Whitney (1947); Wilcoxon (1945).
    """
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.size == 0 or y.size == 0:
        raise ValueError("mann_whitney_u: both samples need at least one value")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("mann_whitney_u: the samples must be finite")
    n1, n2 = x.size, y.size
    both = np.concatenate([x, y])
    ranks = _average_ranks(both)
    u1 = float(np.sum(ranks[:n1]) - n1 * (n1 + 1) / 2.0)
    u2 = n1 * n2 - u1
    _, counts = np.unique(both, return_counts=True)
    ties = bool(np.any(counts > 1))
    if method == "auto":
        method = "asymptotic" if (n1 > 8 and n2 > 8) or ties else "exact"
    if method not in ("exact", "asymptotic"):
        raise ValueError(
            f"mann_whitney_u: method must be auto, exact or asymptotic; got {method!r}"
        )
    big = max(u1, u2)
    if method == "exact":
        # P(U >= big) from the exact null distribution of U (no ties), two-sided by symmetry
        dist = _u_distribution(n1, n2)
        sf = float(np.sum(dist[int(math.ceil(big)) :]))
        p = 2.0 * sf
    else:
        n = n1 + n2
        tie_term = float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (n * (n - 1))
        sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
        mu = n1 * n2 / 2.0
        if sd == 0.0:
            p = 1.0
        else:
            z = (big - mu - 0.5) / sd
            p = 2.0 * 0.5 * math.erfc(z / math.sqrt(2.0))
    return u1, float(min(max(p, 0.0), 1.0))


def _average_ranks(values):
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, np.float64)
    sorted_values = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _u_distribution(n1, n2):
    """The null distribution of U for sample sizes n1, n2 (no ties): probabilities of U = 0 .. n1*n2.

    Counts of the arrangements: f(m, n, u) = f(m − 1, n, u − n) + f(m, n − 1, u) with f(0, n, 0) = f(m, 0, 0) = 1.
    """
    # table[n][u] holds f(m, n, u) for the current m
    table = [np.zeros(n1 * n2 + 1) for _ in range(n2 + 1)]
    for n in range(n2 + 1):
        table[n][0] = 1.0  # m = 0
    for _m in range(1, n1 + 1):
        new = [np.zeros(n1 * n2 + 1) for _ in range(n2 + 1)]
        new[0][0] = 1.0
        for n in range(1, n2 + 1):
            shifted = np.zeros(n1 * n2 + 1)
            shifted[n:] = table[n][: n1 * n2 + 1 - n]
            new[n] = shifted + new[n - 1]
        table = new
    counts = table[n2]
    return counts / counts.sum()


def compare_results(with_runs, without_runs, *, names=("with", "without")):
    """Mean ± std per metric of two arms and the Mann–Whitney p-value of each metric.

    Args:
        with_runs, without_runs: lists of metric dicts (`msa_metrics`), one per seed.
        names: the arms' row names.

    Returns:
        `{"aggregate": {name: aggregate_runs(...)}, "tests": {metric: {"u": U1, "p": p}}, "n": [n1, n2]}`.
    """
    a, b = metrics.aggregate_runs(with_runs), metrics.aggregate_runs(without_runs)
    if list(a) != list(b):
        raise ValueError("compare_results: the two arms report different metrics")
    tests = {}
    for key in a:
        u, p = mann_whitney_u([r[key] for r in with_runs], [r[key] for r in without_runs])
        tests[key] = {"u": u, "p": p}
    return {
        "aggregate": {names[0]: a, names[1]: b},
        "tests": tests,
        "n": [len(with_runs), len(without_runs)],
    }


def format_comparison(result, *, alpha=0.05):
    """Markdown: the arms' mean ± std table (`format_markdown`) and one row of p-values (`*`: p < alpha)."""
    table = metrics.format_markdown(result["aggregate"])
    keys = list(result["tests"])
    head = "| test | " + " | ".join(metrics.DISPLAY_NAMES.get(k, k) for k in keys) + " |"
    cells = []
    for k in keys:
        p = result["tests"][k]["p"]
        cells.append(f"{p:.3f}{'*' if p < alpha else ''}")
    n1, n2 = result["n"]
    rows = [
        head,
        "|" + "---|" * (len(keys) + 1),
        f"| Mann–Whitney U p (n = {n1} vs {n2}) | " + " | ".join(cells) + " |",
    ]
    return table + "\n\n" + "\n".join(rows)


def baseline_of(config, overrides=None):
    """The baseline configuration: `config` with `overrides` (`--set` strings; default: the method's entry in
    `BASELINES`, e.g. MDM's `model.penalty=none`)."""
    if overrides is None:
        if config.method not in BASELINES:
            raise ValueError(
                f"no default baseline for --method {config.method}; give it with --baseline-set KEY=VALUE "
                "(e.g. --baseline-set model.beta=0)"
            )
        overrides = BASELINES[config.method]
    baseline = config.with_overrides(list(overrides))
    a = dataclasses.replace(config, name=None).resolved().to_dict()
    b = dataclasses.replace(baseline, name=None).resolved().to_dict()
    if {**a, "name": None} == {**b, "name": None}:
        raise ValueError(
            f"the baseline overrides {list(overrides)} leave the configuration unchanged"
        )
    if config.name is not None and baseline.name == config.name:
        baseline = dataclasses.replace(baseline, name=f"{config.name}_baseline")
    return baseline


def compare_configs(config, baseline, seeds, workdir="runs", *, verbose=1, train_fn=None):
    """Trains `config` and `baseline` once per seed and writes their comparison.

    Run directories: `<workdir>/<stem>_seed<s>` for each arm, `<stem>` its default name without the seed (or
    `config.name`), as `train.py --seeds` names them: finished runs are reused (their backups make the
    training a no-op), so a comparison can be extended with more seeds. Writes `<workdir>/<stem>_vs_<stem
    of the baseline>_compare.{json,md}`.

    Args:
        config, baseline: `RunConfig`s (e.g. `baseline_of(config)`).
        seeds: the seeds (the same for both arms).
        workdir: the runs' parent folder.
        verbose: Keras verbosity of the runs (the table is returned and written; `scripts/compare.py` prints it).
        train_fn: `train_and_evaluate`-like function (tests substitute one); default `train_in_subprocess`
            (each run in its own process: many XLA runs in one process exhaust its memory).

    Returns:
        `compare_results(...)` plus `"runs"`: {arm: {seed: test metrics}} and `"files"`.
    """
    if train_fn is None:
        from keras_mmsa.training.run import train_in_subprocess

        def train_fn(run, workdir, verbose):
            return train_in_subprocess(run, workdir, verbose=verbose, export=False)

    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ValueError("compare: give at least 2 seeds (a test needs several runs per arm)")
    arms = {}
    for arm in (config, baseline):
        stem = arm.name or arm.default_name(with_seed=False)
        resolved = arm.resolved()
        per_seed = {}
        for seed in seeds:
            run = dataclasses.replace(resolved, seed=seed, name=f"{stem}_seed{seed}")
            per_seed[seed] = train_fn(run, workdir, verbose)["test"]
        arms[stem] = per_seed
    (stem_a, runs_a), (stem_b, runs_b) = arms.items()
    if stem_a == stem_b:
        raise ValueError(f"both arms would train in the same run directories ({stem_a}_seed*)")
    result = compare_results(
        [runs_a[s] for s in seeds], [runs_b[s] for s in seeds], names=(stem_a, stem_b)
    )
    result["runs"] = {stem_a: runs_a, stem_b: runs_b}
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / f"{stem_a}_vs_{stem_b}_compare"
    text = format_comparison(result)
    result["files"] = [str(base) + ".json", str(base) + ".md"]
    pathlib.Path(result["files"][0]).write_text(json.dumps(result, indent=2) + "\n")
    pathlib.Path(result["files"][1]).write_text(text + "\n")
    return result
