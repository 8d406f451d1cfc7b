"""benchmarks/paired_seeds.py: the paired p-values against closed forms and scipy, and the table."""

import json

import numpy as np
import pytest

from benchmarks import paired_seeds


def test_sign_flip_p_is_exact():
    # all differences of one sign: only the observed pattern and its mirror reach |sum| -> 2 / 2^n
    assert paired_seeds.sign_flip_p([0.1, 0.2, 0.3]) == pytest.approx(2 / 8)
    # 0.3 dominates: patterns with |sum| >= 0.35: (+,+,+) 0.35... enumerate by hand
    d = [0.3, -0.05, 0.1]
    sums = [abs(a * 0.3 + b * -0.05 + c * 0.1) for a in (1, -1) for b in (1, -1) for c in (1, -1)]
    assert paired_seeds.sign_flip_p(d) == pytest.approx(np.mean([s >= 0.35 - 1e-12 for s in sums]))


def test_paired_t_matches_scipy_and_the_two_df_closed_form(monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    d = [0.05, 0.02, 0.04]
    expected = stats.ttest_1samp(d, 0.0).pvalue
    assert paired_seeds.paired_t_p(d) == pytest.approx(expected, rel=1e-9)
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert paired_seeds.paired_t_p(d) == pytest.approx(expected, rel=1e-9)
    assert paired_seeds.paired_t_p([0.1, 0.1, 0.1]) is None  # no spread: no t


def test_compare_pairs_by_seed_and_writes_tables(tmp_path):
    def results(values):
        runs = {
            s: {
                "test": {
                    "mae": v,
                    "corr": 0.7,
                    "acc7": 0.4,
                    "has0_acc2": 0.8,
                    "non0_acc2": 0.82,
                    "non0_f1": 0.82,
                }
            }
            for s, v in values.items()
        }
        return {"results": {"text+audio": {"seeds": runs}}}

    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(results({"1111": 0.80, "1112": 0.75, "1113": 0.78})))
    new = tmp_path / "new.json"
    new.write_text(json.dumps(results({"1111": 0.74, "1112": 0.72, "1113": 0.74, "1114": 0.1})))
    paired_seeds.main(
        ["--reference", f"mmim={ref}", f"self_mm={new}", "--out", str(tmp_path / "o")]
    )
    report = json.loads((tmp_path / "o" / "paired.json").read_text())
    row = report["rows"][1]
    assert row["seeds"] == ["1111", "1112", "1113"]  # 1114 has no partner
    assert row["metrics"]["mae"]["difference"] == pytest.approx(-(0.06 + 0.03 + 0.04) / 3)
    assert row["metrics"]["mae"]["p_sign_flip"] == pytest.approx(0.25)
    text = (tmp_path / "o" / "paired.md").read_text()
    assert "| self_mm | 1111,1112,1113 | 0.733 ± 0.009" in text and "cannot go below 0.250" in text
    with pytest.raises(ValueError, match="no configuration 'text'"):
        paired_seeds.per_seed(ref, "text")
