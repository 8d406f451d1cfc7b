"""The workflow around MDM on a run directory: `--drop` (modality-drop robustness, any run), `--explain` (T_θ's
score per clip, sorted), the paired seed comparison (Mann–Whitney U against scipy), and, marked large, the
scripts end to end."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mmsa import backbones, metrics
from keras_mmsa.data import pipeline
from keras_mmsa.training import RunConfig, evaluate_drops, evaluate_run
from keras_mmsa.training import run as run_lib
from keras_mmsa.training.compare import (
    baseline_of,
    compare_configs,
    format_comparison,
    mann_whitney_u,
)
from keras_mmsa.training.evaluation import drop_modalities, parse_drop

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_MODEL = dict(
    text_hidden=8, audio_hidden=4, vision_hidden=6, text_out=5, post_fusion_dim=8, unroll=2
)
SHORT = {"audio": 8, "vision": 8}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    os.environ["KMSA_DATA_DIR"] = str(d)
    yield d
    os.environ.pop("KMSA_DATA_DIR", None)


@pytest.fixture(scope="module")
def mdm_run(tmp_path_factory, data_dir):
    """A run directory of a tiny MDM (KL penalty) written as `train_and_evaluate` writes it, without training:
    the evaluation paths read only config.json, model.json, the best checkpoint and the tokenizer."""
    config = RunConfig(
        method="mdm",
        seed=3,
        max_lengths=SHORT,
        model={**TINY_MODEL, "penalty": "kl"},
        train={"batch_size": 64},
    ).resolved()
    keras.utils.set_random_seed(3)
    backbone, tokenizer = backbones.load_text_backbone(config.text_backbone)
    pipeline.prepare_builder(config.dataset)
    info = pipeline.dataset_info(config.dataset)
    model = run_lib.build_model(config, info, backbone)
    run_dir = tmp_path_factory.mktemp("runs") / config.run_name
    (run_dir / "checkpoints").mkdir(parents=True)
    config.to_json(run_dir / run_lib.CONFIG)
    (run_dir / run_lib.MODEL).write_text(json.dumps(keras.saving.serialize_keras_object(model)))
    run_lib.save_tokenizer(run_dir / run_lib.TOKENIZER, backbone, tokenizer)
    model.save_weights(run_dir / run_lib.BEST)
    return run_dir, model, tokenizer


# ------------------------------------------------------------------------------- --drop


def test_drop_modalities_blanks_content_and_keeps_lengths_and_masks():
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(5, 50, size=(4, 6)).astype("int32"),
        "padding_mask": np.arange(6)[None, :] < np.array([[2], [6], [3], [1]]),
        "segment_ids": np.zeros((4, 6), "int32"),
        "audio": rng.normal(size=(4, 3, 2)).astype("float32"),
        "audio_lengths": np.array([1, 2, 3, 3], "int32"),
        "vision": rng.normal(size=(4, 5, 2)).astype("float32"),
        "vision_lengths": np.array([5, 4, 3, 2], "int32"),
    }
    out = drop_modalities(x, parse_drop("text,audio"), pad_token_id=7)
    assert np.all(out["token_ids"] == 7) and out["token_ids"].dtype == np.int32
    assert np.all(out["audio"] == 0.0)
    for key in ("padding_mask", "segment_ids", "audio_lengths", "vision", "vision_lengths"):
        np.testing.assert_array_equal(out[key], x[key])
    assert parse_drop("vision , text") == ("text", "vision")
    with pytest.raises(ValueError, match="expected comma-separated modalities"):
        parse_drop("speech")
    with pytest.raises(ValueError, match="no 'vision' modality"):
        drop_modalities({"token_ids": x["token_ids"]}, ["vision"])


def test_evaluate_drops_reports_fig2_ratios_and_a_plot(mdm_run, tmp_path):
    run_dir, model, tokenizer = mdm_run
    report = evaluate_drops(run_dir, ["text", "text,audio"], out_dir=tmp_path)
    assert set(report["drops"]) == {"text", "text+audio"}
    entry = report["drops"]["text+audio"]
    assert entry["kept"] == ["vision"] and entry["dropped"] == ["text", "audio"]
    # the numbers are those of the model's predictions on the blanked batches
    config = RunConfig.from_json(run_dir / "config.json")
    ds = pipeline.load(
        "sample", "test", 64, text_backbone=tokenizer, max_lengths=config.max_lengths
    )
    batches = list(ds)
    x = {k: np.concatenate([b[0][k].numpy() for b in batches]) for k in batches[0][0]}
    y = np.concatenate([b[1].numpy() for b in batches])
    p = np.asarray(model(drop_modalities(x, ["text", "audio"])))  # the whole split in one call
    expected = metrics.msa_metrics(y, p, family="mosi")
    for k, v in expected.items():
        assert np.isclose(entry["metrics"][k], v, atol=1e-6), k
    clean = report["clean"]
    for k in ("has0_acc2", "non0_acc2"):
        assert np.isclose(entry[f"ratio_{k}"], expected[k] / clean[k])
    assert (tmp_path / "robustness_test.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "robustness_test.json").read_text())
    assert saved["drops"]["text"]["ratio_non0_acc2"] == report["drops"]["text"]["ratio_non0_acc2"]
    assert "corrupt / clean" in (tmp_path / "robustness_test.md").read_text()
    with pytest.raises(ValueError, match="expected comma-separated"):
        evaluate_drops(run_dir, ["smell"], out_dir=tmp_path)


def test_drop_plot_is_optional(monkeypatch, tmp_path):
    from keras_mmsa.training import evaluation

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    report = {"clean": {"acc2": 0.8}, "drops": {"text": {"kept": ["audio"], "ratio_acc2": 0.5}}}
    path, note = evaluation._plot_drops(report, tmp_path / "p.png", title="t")
    assert path is None and "matplotlib is not installed" in note


# ------------------------------------------------------------------------------- --explain


def test_explain_writes_t_scores_sorted_highest_first(mdm_run, tmp_path):
    run_dir, model, _ = mdm_run
    evaluate_run(run_dir, "test", explain=True, out_dir=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "explain_test.csv")))
    assert len(rows) == 150
    assert list(rows[0]) == ["rank", "id", "text", "label", "prediction", "t_score"]
    scores = [float(r["t_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert [int(r["rank"]) for r in rows] == list(range(1, 151))
    assert all(0.0 < s < 1.0 for s in scores) and len({r["id"] for r in rows}) == 150


# ------------------------------------------------------------------------------- paired comparison


@pytest.mark.parametrize(
    "x, y",
    [
        ([0.71, 0.74, 0.69], [0.80, 0.79, 0.83]),  # exact, complete separation
        ([0.70, 0.78, 0.75, 0.72, 0.74], [0.73, 0.79, 0.77, 0.80, 0.76]),  # exact
        ([0.70, 0.70, 0.72, 0.75], [0.70, 0.72, 0.76, 0.77]),  # ties: asymptotic
        (list(np.linspace(0, 1, 10)), list(np.linspace(0.3, 1.3, 12))),  # large: asymptotic
        ([0.5, 0.5, 0.5], [0.4, 0.6, 0.5]),  # ties
    ],
)
def test_mann_whitney_u_matches_scipy(x, y):
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.mannwhitneyu(x, y, alternative="two-sided")
    u, p = mann_whitney_u(x, y)
    assert u == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue, rel=1e-9)
    for method in ("exact", "asymptotic"):
        if method == "exact" and len(set(x) | set(y)) < len(x) + len(y):
            continue
        ref = scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method=method)
        assert mann_whitney_u(x, y, method=method)[1] == pytest.approx(ref.pvalue, rel=1e-9)


def test_compare_configs_tables_and_p_values(tmp_path):
    config = RunConfig(method="mdm", model={"penalty": "f"})
    baseline = baseline_of(config)
    assert baseline.model["penalty"] == "none"
    calls = []

    def fake_train(run, workdir, verbose):
        calls.append((run.name, run.seed, run.model["penalty"]))
        better = run.model["penalty"] != "none"
        rng = np.random.default_rng(run.seed)
        y = rng.uniform(-3, 3, size=40)
        p = y + rng.normal(scale=0.5 if better else 1.5, size=40)
        return {"test": metrics.msa_metrics(y, p)}

    result = compare_configs(
        config, baseline, [1, 2, 3, 4], tmp_path, verbose=0, train_fn=fake_train
    )
    stems = list(result["aggregate"])
    assert len(calls) == 8 and len(set(stems)) == 2
    assert {name for name, _, _ in calls} == {f"{s}_seed{k}" for s in stems for k in (1, 2, 3, 4)}
    with_runs = [result["runs"][stems[0]][k] for k in (1, 2, 3, 4)]
    without = [result["runs"][stems[1]][k] for k in (1, 2, 3, 4)]
    for key in ("mae", "non0_acc2"):
        u, p = mann_whitney_u([r[key] for r in with_runs], [r[key] for r in without])
        assert result["tests"][key] == {"u": u, "p": p}
        assert result["aggregate"][stems[0]][key] == metrics.aggregate_runs(with_runs)[key]
    assert result["tests"]["mae"]["p"] == pytest.approx(2 / 70)  # complete separation, 4 vs 4
    text = (tmp_path / f"{stems[0]}_vs_{stems[1]}_compare.md").read_text()
    assert text == format_comparison(result) + "\n"
    assert "±" in text and "0.029*" in text
    with pytest.raises(ValueError, match="no default baseline"):
        baseline_of(RunConfig(method="tfn"))
    with pytest.raises(ValueError, match="leave the configuration unchanged"):
        baseline_of(config, ["model.penalty=f"])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare_configs(config, baseline, [1], tmp_path, train_fn=fake_train)


# ------------------------------------------------------------------------------- scripts end to end


def _script(name, *args, env=None, timeout=1800):
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.large
@pytest.mark.parametrize("penalty", ["kl", "f", "wasserstein"])
def test_train_evaluate_drop_explain_scripts(tmp_path, data_dir, penalty):
    """`train.py --method mdm --set model.penalty=...` (XLA, unroll 10), then `evaluate.py RUN --drop text
    --drop text,audio --explain` in fresh processes."""
    env = dict(os.environ, KMSA_DATA_DIR=str(data_dir))
    workdir = tmp_path / "runs"
    common = ["--set", "max_lengths.audio=24", "--set", "max_lengths.vision=24"]
    export = [] if penalty == "kl" else ["--no-export"]
    _script(
        "train", "--method", "mdm", "--epochs", "2", "--workdir", str(workdir), *export,
        "--verbose", "0", "--set", f"model.penalty={penalty}", *common, env=env,
    )  # fmt: skip
    (run_dir,) = list(workdir.iterdir())
    history = json.loads((run_dir / "history.json").read_text())
    for key in ("task", "mdm", "critic_loss", "mdm_critic"):
        assert len(history[key]) == 2 and all(np.isfinite(history[key])), key
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "logs" / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    for name in ("task", "mdm", "critic_loss", "mdm_critic", "lr_critic", "lr_main"):
        assert f"epoch_{name}" in tags, (name, sorted(tags))
    if penalty == "kl":  # the default export path of an MDM run
        assert (run_dir / "export" / "saved_model.pb").exists()
    stdout = _script(
        "evaluate", str(run_dir), "--drop", "text", "--drop", "text,audio", "--explain", env=env
    )
    assert "corrupt / clean" in stdout and "t_score=" in stdout
    assert (run_dir / "robustness_test.png").exists() and (run_dir / "explain_test.csv").exists()


@pytest.mark.large
def test_compare_script_over_two_seeds(tmp_path, data_dir):
    env = dict(os.environ, KMSA_DATA_DIR=str(data_dir))
    stdout = _script(
        "compare", "--method", "mdm", "--seeds", "1,2", "--epochs", "1", "--workdir", str(tmp_path),
        "--verbose", "0", "--set", "max_lengths.audio=24", "--set", "max_lengths.vision=24", env=env,
    )  # fmt: skip
    assert "Mann–Whitney U p (n = 2 vs 2)" in stdout
    assert len(list(tmp_path.glob("*_compare.json"))) == 1
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 4
