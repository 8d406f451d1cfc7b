"""`benchmarks/mdm_grid.py`: MDM over base models × penalties × seeds (issue 15's table, timing and paired test).

The default tests check the script's arithmetic and report on a synthetic grid (no training); the `large` test
trains LMF alone and + Wasserstein for two seeds of one epoch on the bundled sample, with a text drop.
"""

import json

import numpy as np
import pytest

from benchmarks import mdm_grid
from keras_mmsa import metrics
from keras_mmsa.training.compare import compare_results


def test_seconds_per_step_leaves_out_the_compiling_first_epoch():
    epochs = [
        {"epoch": 0, "seconds": 30.0, "steps": 10},  # XLA compilation
        {"epoch": 1, "seconds": 1.0, "steps": 10},
        {"epoch": 2, "seconds": 3.0, "steps": 10},
        {"epoch": 3, "seconds": 2.0, "steps": 10},
    ]
    assert mdm_grid.seconds_per_step(epochs) == pytest.approx(0.2)
    assert mdm_grid.seconds_per_step(epochs[:1]) == pytest.approx(3.0)  # the only epoch
    assert mdm_grid.seconds_per_step([]) is None


def _table(rng):
    keys = metrics.metric_keys("mosi")
    return {k: float(rng.uniform(0.5, 1.0)) for k in keys}


def _synthetic_report(seeds=(1, 2, 3)):
    rng = np.random.default_rng(0)
    cells = {}
    for base, step in (("tfn", 0.010), ("mag_bert", 0.200)):
        cells[base] = {}
        for penalty, cost in (("none", 1.0), ("wasserstein", 2.5)):
            per_seed = {
                str(s): {
                    "test": _table(rng),
                    "best_epoch": 1,
                    "epochs_run": 2,
                    "seconds_per_step": step * cost,
                    "robustness": {"text": {"ratio_non0_acc2": 0.6 + 0.1 * i}},
                }
                for i, s in enumerate(seeds)
            }
            cells[base][penalty] = {
                "seeds": per_seed,
                "aggregate": metrics.aggregate_runs([r["test"] for r in per_seed.values()]),
                "seconds_per_step": step * cost,
                "robustness": mdm_grid._aggregate_robustness(
                    [r["robustness"] for r in per_seed.values()]
                ),
            }
        alone = [r["test"] for r in cells[base]["none"]["seeds"].values()]
        penalised = [r["test"] for r in cells[base]["wasserstein"]["seeds"].values()]
        cells[base]["wasserstein"]["versus_none"] = compare_results(penalised, alone)
    return {
        "dataset": "sample",
        "command": "python benchmarks/mdm_grid.py",
        "date": "2026-11-28",
        "wall_seconds_this_invocation": 1.0,
        "seeds": list(seeds),
        "epochs": 2,
        "patience": None,
        "std": "population std",
        "cells": cells,
        "settings": {},
        "drops": ["text"],
        "plot": None,
    }


def test_report_tables_ratios_robustness_and_p_values():
    report = _synthetic_report()
    text = mdm_grid.format_report(report)
    # every cell of the base x penalty table, MAE with its std over the 3 seeds
    agg = report["cells"]["tfn"]["wasserstein"]["aggregate"]
    assert f"{agg['mae']['mean']:.3f} ± {agg['mae']['std']:.3f}" in text
    # time per step in ms and the ratio against the base alone
    assert "| mag_bert | 200.0 | 500.0 (×2.50) |" in text
    # robustness: the mean of 0.6, 0.7, 0.8 and its population std
    assert f"0.700 ± {np.std([0.6, 0.7, 0.8]):.3f}" in text
    # the paired test, and the warning that 3 vs 3 seeds cannot reach p < 0.05 (smallest exact p = 0.1)
    assert "Mann–Whitney U p (n = 3 vs 3)" in text
    assert "smallest two-sided exact p-value is 0.100" in text
    assert "### tfn: + wasserstein vs alone" in text
    # five seeds can: no warning
    assert "smallest two-sided" not in mdm_grid.format_report(_synthetic_report(seeds=range(5)))


def test_unknown_base_or_penalty_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown base"):
        mdm_grid.run_grid(tmp_path, workdir=tmp_path, bases=["bert"], penalties=["none"])


@pytest.mark.large
def test_grid_trains_times_compares_and_drops(tmp_path, monkeypatch):
    """LMF alone and + Wasserstein, 2 seeds x 1 epoch on the sample, text dropped: every file and number."""
    data_dir = tmp_path / "tfds"
    monkeypatch.setenv("KMSA_DATA_DIR", str(data_dir))
    argv = [
        "--bases", "lmf", "--penalties", "none,wasserstein", "--seeds", "1,2", "--epochs", "1",
        "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--verbose", "0",
        "--drop", "text", "--set", "max_lengths.audio=24", "--set", "max_lengths.vision=24",
    ]  # fmt: skip
    assert mdm_grid.main(argv) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    cells = report["cells"]["lmf"]
    for penalty in ("none", "wasserstein"):
        assert np.isfinite(cells[penalty]["aggregate"]["mae"]["mean"])
        assert cells[penalty]["seconds_per_step"] > 0
        ratio = cells[penalty]["robustness"]["text"]["ratio_non0_acc2"]["mean"]
        assert 0.0 <= ratio <= 2.0
    assert "versus_none" in cells["wasserstein"]
    assert (tmp_path / "out" / "robustness.png").exists()
    assert len(list((tmp_path / "runs").iterdir())) == 4
    # a re-run reuses the four finished runs (no training: the runs' directories are unchanged)
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/metrics.json")}
    assert mdm_grid.main(argv) == 0
    assert before == {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/metrics.json")}
