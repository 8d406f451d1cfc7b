"""`benchmarks/bert_step.py`: the report's ratios and per-epoch bound, and one real tiny measurement."""

import sys

import pytest

from benchmarks import bert_step


def _result(impl, optimizer, forward, step, peak):
    return {
        "case": {
            "implementation": impl,
            "optimizer": optimizer,
            "backbone": "base",
            "batch_size": 32,
        },
        "forward_s": {"median": forward},
        "step_s": {"median": step},
        "step_first_s": 1.0,
        "peak_mb": {"built": peak / 2, "forward": peak / 2, "step": peak},
    }


def test_report_gives_ratios_to_torch_of_the_same_optimizer_and_the_per_epoch_bound():
    results = [
        _result("tensorflow", "adam", 1.5, 5.0, 4800.0),
        _result("tensorflow", "sgd", 1.5, 4.0, 3600.0),
        _result("torch", "adam", 2.0, 6.0, 3200.0),
        _result("torch", "sgd", 2.0, 5.0, 2400.0),
        {"case": {"implementation": "jax", "optimizer": "adam"}, "error": "boom"},
    ]
    meta = dict(date="d", platform="p", load_before=1, load_after=1, command="c", versions="v")
    text = bert_step.markdown(results, meta)
    # adam: 6.0 / 5.0 faster, 4800 / 3200 the memory; sgd against torch's sgd row, not adam's
    assert "| tensorflow | adam | 1.500 | 5.000 | 1.20 | 1.0 | 2400 | 2400 | 4800 | 1.50 |" in text
    assert "| tensorflow | sgd | 1.500 | 4.000 | 1.25 | 1.0 | 1800 | 1800 | 3600 | 1.50 |" in text
    assert "| jax | adam | failed: boom |" in text
    # the reference's pair of batches = 2 x 6.0 s; ours = 1.5 + 5.0 s -> 12 / 6.5
    assert "2 x step = 12.00 s" in text
    assert "- tensorflow: 6.50 s, at most **1.85x** the reference." in text


def test_no_bound_without_the_reference():
    assert bert_step.per_epoch_bound([_result("tensorflow", "adam", 1.0, 2.0, 100.0)]) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_tiny_bert_forward_and_step_are_timed_in_a_fresh_process():
    # a fresh process, as the script runs each configuration: a pytest worker's high-water mark is that of
    # every test before this one
    case = bert_step.Case("tensorflow", "adam", "tiny", 4)
    r = bert_step.run_isolated(case, repeats=1, warmup=0, seed=0, timeout=600)
    assert r["case"] == bert_step.dataclasses.asdict(case) and r["backend"] == "tensorflow"
    assert r["forward_s"]["median"] > 0 and r["step_s"]["median"] > 0
    p = r["peak_mb"]
    # VmHWM is read lazily by the kernel: allow it 1 MiB of jitter between reads
    assert p["imports"] <= p["built"] + 1 <= p["forward"] + 2 <= p["step"] + 3
    assert p["step"] > p["imports"] + 10, (
        p
    )  # the model and its step are resident on top of the imports
