"""`benchmarks/memory_breakdown.py`: the /proc reading and the table's per-phase increments (no training)."""

import sys

import pytest

from benchmarks import memory_breakdown as mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_reads_the_current_and_peak_resident_size():
    rss, peak = mb.memory_mb()
    block = bytearray(64 * 1024 * 1024)  # touch 64 MiB
    block[::4096] = b"x" * len(block[::4096])
    rss2, peak2 = mb.memory_mb()
    assert 0 < rss <= peak and peak2 >= peak
    assert rss2 - rss > 48, (rss, rss2)


def test_markdown_gives_each_phase_its_increment_and_the_peak_ratio():
    results = [
        {
            "label": "tiny B=32 xla",
            "keras": [
                {"phase": "python", "rss_mb": 30.0, "peak_mb": 30.0},
                {"phase": "tensorflow", "rss_mb": 630.0, "peak_mb": 640.0},
                {"phase": "steady", "rss_mb": 1500.0, "peak_mb": 2000.0},
            ],
            "torch": [
                {"phase": "python", "rss_mb": 25.0, "peak_mb": 25.0},
                {"phase": "full run (peak)", "rss_mb": None, "peak_mb": 800.0},
            ],
        }
    ]
    meta = dict(date="d", platform="p", load_before=[1], load_after=[1], command="c")
    text = mb.markdown(results, meta)
    assert "| keras | tensorflow | 630 | 640 | +610 |" in text
    assert "| keras | steady | 1500 | 2000 | +1360 |" in text
    assert "| torch | full run (peak) |  | 800 | +775 |" in text
    assert "2000 / 800 MiB = 2.50x" in text
