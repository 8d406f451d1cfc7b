"""Short training runs on small correlated Gaussians (`benchmarks/estimators.py` on a tiny config), and its CLI.

Tolerances. Every reported value is the mean over the last `WINDOW` steps of a level, each step on a fresh
batch, so its sampling error is about std/√WINDOW (≈ 0.02 nats here). Lower bounds hold in expectation for
the *population* objective; the minibatch plug-in estimates of DV/InfoNCE (log of a batch mean) are biased
upward by Jensen by O(Var/batch) — a few hundredths of a nat at batch 64 and I ≤ 2. So a lower bound may
exceed the truth by at most `3·SE + 0.1` nats; anything above that is a bug, not noise. CLUB's reference
value with the exact conditional is d(e^{2I/d} − 1) > I (see the benchmark docs); a fitted q must put it
above the truth by more than the same tolerance.
"""

import csv
import math
import os

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from benchmarks.estimators import (
    ALL_ESTIMATORS,
    LOWER_BOUNDS,
    SUMMARY_COLUMNS,
    UPPER_BOUNDS,
    BenchmarkConfig,
    club_gaussian_limit,
    main,
    marginal_entropy,
    run_benchmark,
)

LEVELS = (1.0, 2.0)
WINDOW = 100
CONFIG = BenchmarkConfig(
    dim=4,
    levels=LEVELS,
    steps_per_level=400,
    window=WINDOW,
    steps_per_call=100,
    variants=("gaussian",),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rows = run_benchmark(CONFIG, str(out), log=lambda msg: None)
    traj = np.load(out / "trajectories_gaussian.npz")
    return out, rows, traj


def test_outputs_written(run):
    out, rows, traj = run
    assert sorted(os.listdir(out)) == [
        "estimators_gaussian.png",
        "run.json",
        "run.log",
        "summary.csv",
        "trajectories_gaussian.npz",
    ]
    with open(out / "summary.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        table = list(reader)
    assert len(table) == len(ALL_ESTIMATORS) * len(LEVELS)
    assert traj["estimates"].shape == (len(LEVELS), 400, len(ALL_ESTIMATORS))
    assert list(traj["estimators"]) == list(ALL_ESTIMATORS)
    assert os.path.getsize(out / "estimators_gaussian.png") > 10_000


def test_no_nan_anywhere(run):
    _, rows, traj = run
    assert np.all(np.isfinite(traj["estimates"]))
    assert all(r["nan_count"] == 0 for r in rows)


def test_infonce_never_exceeds_log_batch(run):
    _, _, traj = run
    names = list(traj["estimators"])
    est = traj["estimates"]
    assert est[:, :, names.index("InfoNCE")].max() <= math.log(CONFIG.batch_size) + 1e-5
    # MMIM's cosine CPC is capped far lower: log B − log(1 + (B−1)e⁻²)
    cap = math.log(64) - math.log1p(63 * math.exp(-2.0))
    assert est[:, :, names.index("CPC")].max() <= cap + 1e-5


def test_lower_bounds_below_and_club_above_the_truth(run):
    _, _, traj = run
    names = list(traj["estimators"])
    est = traj["estimates"]
    for k, truth in enumerate(LEVELS):
        for name in LOWER_BOUNDS + UPPER_BOUNDS:
            tail = est[k, -WINDOW:, names.index(name)]
            tol = 3 * tail.std() / math.sqrt(WINDOW) + 0.1
            if name in LOWER_BOUNDS:
                assert tail.mean() <= truth + tol, (name, truth, tail.mean())
            else:
                assert tail.mean() >= truth + tol, (name, truth, tail.mean())
                # ... and not above what the exact conditional would give (q's variance is bounded below)
                assert tail.mean() <= club_gaussian_limit(mi=truth, dim=CONFIG.dim) + 0.5, (
                    name,
                    tail.mean(),
                )
    # the bounds that can be tight get reasonably close after 400 steps (they learn)
    for name in ("NWJ", "DV", "BA"):
        assert est[0, -WINDOW:, names.index(name)].mean() > 0.6 * LEVELS[0], name


def test_cubic_marginal_entropy_by_change_of_variables():
    # H(y³) = H(y) + E log|3 y²| for y ~ N(0, 1), integrated numerically
    # 2 ∫_0^∞ (symmetric integrand; log singularity at 0 is integrable)
    e_log = (
        2
        * scipy.integrate.quad(lambda t: np.log(3 * t * t) * scipy.stats.norm.pdf(t), 0, np.inf)[0]
    )
    assert marginal_entropy(dim=3, variant="cubic") == pytest.approx(
        3 * (scipy.stats.norm.entropy() + e_log), rel=1e-6
    )
    assert marginal_entropy(dim=3, variant="gaussian") == pytest.approx(
        3 * scipy.stats.norm.entropy()
    )


def test_config_validation():
    with pytest.raises(ValueError, match="Unknown estimators"):
        BenchmarkConfig(estimators=("MINE", "TUBA"))
    with pytest.raises(ValueError, match="window"):
        BenchmarkConfig(steps_per_level=100, window=200)


@pytest.mark.large
def test_cli_quick(tmp_path):
    """The documented quick mode end to end (both variants, all estimators): ~2–4 min on 2 cores."""
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ALL_ESTIMATORS) * 5 * 2
    assert all(int(r["nan_count"]) == 0 for r in rows)
    assert (tmp_path / "estimators_cubic.png").exists()
