"""The MIRD throughput benchmark (benchmarks/mird_throughput.py): its pure pieces, the Keras side's step on small
batches, and (marked large, with a PyTorch environment and a copy of the official code) the official step."""

import json
import os
import subprocess

import numpy as np
import pytest
from harness import fake_benchmark_sides, fake_keras_result, fake_torch_result, run_script

from benchmarks import mird_throughput as bm
from benchmarks import torch_mird
from benchmarks.training_throughput import Shapes

TORCH_PYTHON = os.environ.get("KERAS_MMSA_TORCH_PYTHON", "/work/torchvenv/bin/python")
# a copy of github.com/qianfan1996/MIRD (e.g. `git clone https://github.com/qianfan1996/MIRD`)
MIRD_SRC = os.environ.get("KERAS_MMSA_MIRD_SRC", "/tmp/mird_official")
SMALL = bm.Settings(shapes=Shapes(audio_len=12, vision_len=16), warmup=0, repeats=1, num_batches=2)


def test_cases_and_settings():
    full = bm.default_cases()
    assert [(c.backbone, c.batch_size) for c in full] == [
        ("tiny", 32),
        ("base", 32),
        ("tiny", 16),
        ("base", 16),
    ]  # batch size by batch size: tiny and base of the main size come first
    assert not any(c.jit_compile for c in full)  # MIRD trains without XLA
    assert [(c.backbone, c.batch_size) for c in bm.default_cases(quick=True)] == [("tiny", 32)]
    assert bm.Settings.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    assert bm.Settings().total_steps(32) == 41 * 100  # ceil(1284 / 32) batches x 100 epochs


def test_official_flags_carry_the_data_and_bert_sizes():
    argv = torch_mird.official_argv(64, 698, 5, 20, 32)
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert flags == {
        "--orig_d_a": "5",
        "--orig_d_v": "20",
        "--hidden_size_l": "64",
        "--hidden_size_multi": "64",
        "--output_dim_l": "698",
        "--train_batch_size": "32",
    }
    assert all(what and why for what, why in torch_mird.PATCHES)


def _keras(case, per_s, rss):
    return fake_keras_result(
        case,
        per_s,
        rss,
        30.0,
        clubs_trained=True,
        club_updates_per_iteration=5.0,
        model_updates_per_iteration=1.0,
        parameters=500_000,
        club_parameters=68_864,
    )


_STAT = {"median": 0.5, "min": 0.5, "max": 0.5, "iqr": 0.0}
# the official MIRD side's own fields
_TORCH_FIELDS = dict(
    model_update_s=_STAT,
    club_updates_s=_STAT,
    clubs_trained=True,
    parameters=870_000,
    club_parameters=25_536,
    official_argv=["--orig_d_a", "5"],
    patches=[{"patch": what, "why": why} for what, why in torch_mird.PATCHES],
)


def _torch(backbone, batch_size, per_s, rss, threads=1):
    return fake_torch_result(backbone, batch_size, per_s, rss, threads, **_TORCH_FIELDS)


def test_run_benchmark_orders_torch_before_keras_and_writes_after_every_case(tmp_path, monkeypatch):
    calls = []

    def fake_torch(case, settings, python, src, threads, timeout):
        calls.append(("torch", case.backbone, case.batch_size, threads))
        if case.backbone == "base" and threads == 2:
            raise subprocess.TimeoutExpired("torch_mird.py", timeout)
        return _torch(case.backbone, case.batch_size, 10.0 if threads == 1 else 5.0, 700.0, threads)

    fake_benchmark_sides(
        monkeypatch, bm, fake_torch, lambda case: _keras(case, 100.0, 1400.0), calls
    )
    cases = bm.default_cases(batch_sizes=(32,))
    report = bm.run_benchmark(
        cases,
        out_dir=tmp_path,
        torch_python="python",
        mird_src="src",
        torch_threads=(1, 2),
        log=lambda m: None,
    )
    assert calls == [
        ("torch", "tiny", 32, 1),
        ("torch", "tiny", 32, 2),
        ("keras", "tiny", 32),
        ("torch", "base", 32, 1),
        ("torch", "base", 32, 2),
        ("keras", "base", 32),
    ]
    assert [r["vs_torch"] for r in report["results"]] == [pytest.approx(10.0)] * 2  # vs 1 thread
    assert report["results"][0]["rss_vs_torch"] == pytest.approx(2.0)
    assert [t["is_reference"] for t in report["torch_reference"]] == [True, False, True]
    assert report["meta"]["torch_failures"] == [
        {"backbone": "base", "batch_size": 32, "threads": 2}
    ]
    saved = json.loads((tmp_path / bm.JSON_NAME).read_text())
    assert len(saved["results"]) == 2
    md = (tmp_path / bm.MD_NAME).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| tiny B=32 no-xla"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:10] == [
        "0.320 (0.010)",
        "3.200 (0.020)",
        "100.0",
        "10.0",
        "10.00",
        "1400",
        "700",
        "2.00",
        "30.0",
    ]
    assert "slower: not the reference" in md
    assert "transformers.optimization.AdamW = torch.optim.AdamW" in md  # the patches are listed
    assert "What differs" in md and "5 CLUB / 1 model updates per iteration" in md


def test_keras_step_on_small_batches_is_finite_and_runs_both_stages():
    """The Keras side's measurement (a fresh tiny MIRD, MOSI preset) on short sequences, in this process."""
    r = bm.measure_case(bm.Case("tiny", 8, False), SMALL)
    assert r["finite_losses"] and r["clubs_trained"]
    assert r["club_updates_per_iteration"] == 5 and r["model_updates_per_iteration"] == 1
    assert np.isfinite(r["iteration_s"]["median"]) and r["samples_per_s"] > 0
    assert r["peak_rss_mb"] > 0


@pytest.mark.large
@pytest.mark.skipif(
    not (os.path.exists(TORCH_PYTHON) and os.path.exists(os.path.join(MIRD_SRC, "models.py"))),
    reason="no PyTorch environment or no copy of the official MIRD code",
)
def test_official_step_runs_on_the_same_batches(tmp_path):
    """torch_mird.py imports the official code with its patches and times its train_epoch on tiny batches."""
    case = bm.Case("tiny", 8, False)
    data = tmp_path / "b.npz"
    bm.save_batches(bm.make_batches(case, SMALL), data)
    out = tmp_path / "t.json"
    proc = subprocess.run(
        [
            TORCH_PYTHON,
            str(bm.TORCH_SCRIPT),
            "--backbone",
            "tiny",
            "--batches",
            str(data),
            "--mird-src",
            MIRD_SRC,
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TQDM_DISABLE="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    t = json.loads(out.read_text())
    assert t["finite_losses"] and t["clubs_trained"]
    assert t["model_update_s"]["median"] > 0 and t["club_updates_s"]["median"] > 0
    assert len(t["patches"]) == len(torch_mird.PATCHES)


@pytest.mark.large
def test_quick_keras_run_end_to_end(tmp_path):
    run_script(bm.__file__, "--quick", "--out", str(tmp_path))
    (r,) = json.loads((tmp_path / bm.JSON_NAME).read_text())["results"]
    assert r["finite_losses"] and r["clubs_trained"] and r["samples_per_s"] > 0
