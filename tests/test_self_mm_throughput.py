"""The Self-MM throughput benchmark's pure pieces (the real run: benchmarks/self_mm_throughput.py)."""

import ast
import json
import os
import pathlib

import numpy as np
import pytest
from harness import fake_benchmark_sides, fake_keras_result, fake_torch_result, run_script

from benchmarks import self_mm_throughput as bm

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_PYTHON = os.environ.get("KERAS_MMSA_TORCH_PYTHON", "/work/torchvenv/bin/python")


def test_batches_carry_distinct_indices_and_their_train_labels():
    batches, train_labels = bm.make_batches(3, 16, vocab_size=100, num_train=60, seed=4)
    assert train_labels.shape == (60,) and train_labels.dtype == np.float32
    assert np.all(np.abs(train_labels) <= 3)
    seen = []
    for x, y in batches:
        assert x["index"].dtype == np.int32 and x["index"].shape == (16,)
        assert x["token_ids"].shape == (16, 50) and x["audio"].shape == (16, 375, 5)
        assert x["vision"].shape == (16, 500, 20)
        assert np.all((0 <= x["index"]) & (x["index"] < 60))
        np.testing.assert_array_equal(y, train_labels[x["index"]])
        seen += list(x["index"])
    assert len(set(seen)) == len(seen)  # one shuffled epoch: no example twice
    again, labels_again = bm.make_batches(3, 16, vocab_size=100, num_train=60, seed=4)
    np.testing.assert_array_equal(labels_again, train_labels)
    np.testing.assert_array_equal(again[2][0]["index"], batches[2][0]["index"])
    np.testing.assert_array_equal(again[2][0]["vision"], batches[2][0]["vision"])
    with pytest.raises(ValueError, match="distinct examples"):
        bm.make_batches(4, 16, vocab_size=100, num_train=60)


def test_saved_batches_hold_index_and_train_labels(tmp_path):
    batches, train_labels = bm.make_batches(2, 8, vocab_size=100, num_train=20, seed=0)
    path = tmp_path / "b.npz"
    bm.save_with_train_labels(batches, train_labels, path)
    with np.load(path) as data:
        assert data["index"].shape == (2, 8) and data["index"].dtype == np.int32
        assert data["token_ids"].shape == (2, 8, 50) and data["label"].shape == (2, 8)
        np.testing.assert_array_equal(data["train_labels"], train_labels)
        np.testing.assert_array_equal(data["label"][1], train_labels[data["index"][1]])


def test_cases():
    with pytest.raises(ValueError, match="backbone"):
        bm.Case("large")
    full = bm.default_cases()
    assert {(c.backbone, c.batch_size) for c in full} == {
        (bb, b) for bb in ("tiny", "base") for b in (16, 32)
    }
    assert all(c.jit_compile for c in full)
    assert {c.backbone for c in bm.default_cases(quick=True)} == {"tiny"}
    s = bm.Settings(repeats=2, num_train=100)
    assert bm.Settings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def _keras(case, per_s, rss):
    return fake_keras_result(case, per_s, rss, 12.0, labels_updated=True)


_STAT = {"median": 0.1, "min": 0.1, "max": 0.1, "iqr": 0.0}
# mmsa's Self-MM side's own fields
_TORCH_FIELDS = dict(
    forward_backward_s=_STAT, ulgm_s=_STAT, step_s=_STAT, mmsa_version="2.2.1", labels_updated=True
)


def _torch(backbone, batch_size, per_s, rss, threads=1):
    return fake_torch_result(backbone, batch_size, per_s, rss, threads, **_TORCH_FIELDS)


def test_ratios_and_markdown():
    tiny16, base16 = bm.Case("tiny", 16), bm.Case("base", 16)
    results = [_keras(tiny16, 400.0, 1500.0), _keras(base16, 8.0, 4000.0)]
    slow = dict(_torch("tiny", 16, 20.0, 800.0, threads=2), is_reference=False)
    fast = dict(_torch("tiny", 16, 100.0, 600.0), is_reference=True)
    bm.add_ratios(results, [slow, fast])
    assert results[0]["vs_torch"] == pytest.approx(4.0)  # against the fastest torch run
    assert results[0]["rss_vs_torch"] == pytest.approx(2.5)
    assert "vs_torch" not in results[1]  # no base reference: no ratio
    meta = {
        "date": "d",
        "machine": "m",
        "cpus": 2,
        "versions": "v",
        "torch_versions": "t",
        "load_before": 1.0,
        "load_after": 2.0,
        "num_train": 1284,
        "repeats_text": "5",
        "warmup_text": "1",
        "command": "python benchmarks/self_mm_throughput.py --quick",
    }
    md = bm.markdown_table(results, [slow, fast], meta)
    row = next(line for line in md.splitlines() if line.startswith("| tiny B=16 xla"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "0.040 (0.010)" and cells[2] == "0.160 (0.020)"
    assert cells[3:10] == ["400.0", "100.0", "4.00", "1500", "600", "2.50", "12.0"]
    base_row = next(line for line in md.splitlines() if line.startswith("| base B=16 xla"))
    assert "| 2.000 (0.010) |  | 8.0 |  |  | 4000 |  |  |" in base_row
    assert "not the reference" in md and "--quick" in md


def test_run_benchmark_orders_torch_before_keras_and_writes_both_files(tmp_path, monkeypatch):
    calls = []

    def fake_torch(backbone, batch_size, settings, python, threads, timeout):
        calls.append(("torch", backbone, batch_size, threads))
        return _torch(backbone, batch_size, 50.0 if threads == 1 else 25.0, 700.0, threads or 2)

    fake_benchmark_sides(
        monkeypatch, bm, fake_torch, lambda case: _keras(case, 100.0, 1400.0), calls
    )
    cases = bm.default_cases(quick=True)
    report = bm.run_benchmark(
        cases, out_dir=tmp_path, torch_python="python", torch_threads=(0, 1), log=lambda m: None
    )
    assert calls[:3] == [("torch", "tiny", 16, 0), ("torch", "tiny", 16, 1), ("keras", "tiny", 16)]
    assert [r["vs_torch"] for r in report["results"]] == [pytest.approx(2.0)] * 2
    assert [r["is_reference"] for r in report["torch_reference"]] == [False, True, False, True]
    saved = json.loads((tmp_path / bm.JSON_NAME).read_text())
    assert saved["results"][0]["rss_vs_torch"] == pytest.approx(2.0)
    assert "| tiny B=32 xla |" in (tmp_path / bm.MD_NAME).read_text()


@pytest.mark.parametrize(
    "script",
    [
        "torch_self_mm.py",
        "torch_mird.py",
        "torch_reference.py",
        "torch_base_models.py",
        "torch_common.py",
    ],
)
def test_torch_side_imports_nothing_of_keras_mmsa(script):
    """The PyTorch-side scripts run in their own environment: besides their shared sibling `torch_common`
    they import nothing of keras_mmsa, Keras, TensorFlow or the Keras-side benchmarks."""
    tree = ast.parse((REPO / "benchmarks" / script).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    names -= {"torch_common", "benchmarks.torch_common"}
    assert not {n.split(".")[0] for n in names} & {
        "keras_mmsa",
        "keras",
        "tensorflow",
        "benchmarks",
    }


@pytest.mark.large
@pytest.mark.skipif(not os.path.exists(TORCH_PYTHON), reason="no PyTorch environment with mmsa")
def test_quick_run_end_to_end(tmp_path):
    run_script(
        REPO / "benchmarks" / "self_mm_throughput.py",
        *("--quick", "--batch-sizes", "16", "--repeats", "2"),
        *("--torch-python", TORCH_PYTHON, "--out", str(tmp_path)),
    )
    report = json.loads((tmp_path / bm.JSON_NAME).read_text())
    (r,) = report["results"]
    assert r["vs_torch"] > 0 and r["rss_vs_torch"] > 0
    assert r["labels_updated"] and r["finite_losses"]
    assert all(t["labels_updated"] for t in report["torch_reference"])
