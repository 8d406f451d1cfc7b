"""The researcher's workflow on the bundled sample: run directory, TensorBoard tags, export round trip,
evaluation/explanation, exact resume after a SIGKILL, seed sweeps, and one-line CLI errors."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa.training import RunConfig, evaluate_run, run_seeds, train_and_evaluate
from keras_mmsa.training.cli import train_main

REPO = pathlib.Path(__file__).resolve().parents[1]
SHORT = {
    "audio": 24,
    "vision": 24,
}  # the sample's signal sits on every valid frame; keeps the tests fast


def _config(**kw):
    base = dict(
        method="mmim",
        dataset="sample",
        seed=7,
        max_lengths=SHORT,
        train={"epochs": 2, "log_every": 2},
    )
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    os.environ["KMSA_DATA_DIR"] = str(d)
    yield d
    os.environ.pop("KMSA_DATA_DIR", None)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """One XLA-compiled run (the default engine path: per-epoch alternation under tf.switch_case)."""
    workdir = tmp_path_factory.mktemp("runs")
    result = train_and_evaluate(_config(jit_compile=True), workdir, verbose=0)
    return workdir / "mmim_sample_seed7", result


def test_run_directory_layout_and_metrics(finished_run):
    run_dir, result = finished_run
    for name in (
        "config.json",
        "model.json",
        "history.json",
        "metrics.json",
        "checkpoints/best.weights.h5",
    ):
        assert (run_dir / name).exists(), name
    assert (run_dir / "tokenizer").is_dir() and (run_dir / "export" / "saved_model.pb").exists()
    saved = RunConfig.from_json(run_dir / "config.json")
    assert (
        saved.train["epochs"] == 2 and saved.model["alpha"] == 0.3 and saved.text_backbone == "tiny"
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert set(metrics["test"]) == {
        "mae", "corr", "acc7", "acc5", "has0_acc2", "has0_f1", "non0_acc2", "non0_f1",
    }  # fmt: skip
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    best = int(np.argmin(history["val_loss"])) + 1
    assert metrics["best_epoch"] == best
    assert np.isclose(metrics["best_val_loss"], min(history["val_loss"]))


def test_tensorboard_event_files_hold_every_named_loss(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = finished_run
    tags = {}
    for sub in ("train", "validation"):
        acc = EventAccumulator(str(run_dir / "logs" / sub), size_guidance={"tensors": 0})
        acc.Reload()
        tags[sub] = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    for name in (
        "loss",
        "task",
        "cpc",
        "ba",
        "entropy",
        "lld",
        "lld_main",
        "lr_bert",
        "lr_main",
        "lr_q",
    ):
        assert f"epoch_{name}" in tags["train"], (name, sorted(tags["train"]))
    assert "batch_task" in tags["train"]  # per-step curves
    for name in ("loss", "mae", "corr", "acc7", "has0_acc2", "non0_f1"):
        assert f"epoch_{name}" in tags["validation"], (name, sorted(tags["validation"]))


def test_export_roundtrip_matches_the_keras_model(finished_run, data_dir):
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the serve_text signature uses)

    from keras_mmsa.data import pipeline
    from keras_mmsa.training.evaluation import load_run

    run_dir, _ = finished_run
    config, model, tokenizer = load_run(run_dir)
    ds = pipeline.load(
        "sample", "test", 16, text_backbone=tokenizer, shuffle=False, max_lengths=SHORT,
        with_metadata=True,
    )  # fmt: skip
    x, _, meta = next(iter(ds))
    expected = np.asarray(model(x, training=False))
    loaded = tf.saved_model.load(str(run_dir / "export"))
    assert {"serve", "serve_text"} <= set(loaded.signatures)
    served = loaded.signatures["serve"](**x)["sentiment"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    no_text = {k: v for k, v in x.items() if k not in ("token_ids", "padding_mask", "segment_ids")}
    from_strings = loaded.signatures["serve_text"](text=meta["text"], **no_text)[
        "sentiment"
    ].numpy()
    np.testing.assert_allclose(from_strings, expected, atol=1e-5)


def test_evaluate_and_explain(finished_run, tmp_path):
    run_dir, result = finished_run
    table = evaluate_run(run_dir, "test", explain=True, out_dir=tmp_path)
    for key, value in result["test"].items():
        assert np.isclose(table[key], value, atol=1e-5), key
    import csv

    rows = list(csv.DictReader(open(tmp_path / "explain_test.csv")))
    assert len(rows) == 150
    assert {"id", "text", "label", "prediction", "s_zt", "s_za", "s_zv", "cos_zv"} <= set(rows[0])
    assert all(np.exp(-1) - 1e-6 <= float(r["s_zv"]) <= np.e + 1e-6 for r in rows)
    assert (tmp_path / "eval_test.md").read_text().startswith("|")


def test_evaluate_and_export_clis_in_a_fresh_process(finished_run, tmp_path):
    """The README's `scripts/evaluate.py RUN` and `scripts/export.py RUN` in a new interpreter, where nothing
    has imported the model classes yet (in-process tests hid that deserialization needs them registered)."""
    run_dir, result = finished_run
    env = dict(os.environ, KMSA_DATA_DIR=os.environ["KMSA_DATA_DIR"])
    for script, extra in (("evaluate", []), ("export", ["--out", str(tmp_path / "export")])):
        out = subprocess.run(
            [sys.executable, str(REPO / "scripts" / f"{script}.py"), str(run_dir), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-1500:]
    table = json.loads((run_dir / "eval_test.json").read_text())
    assert np.isclose(table["mae"], result["test"]["mae"], atol=1e-5)
    assert (tmp_path / "export" / "saved_model.pb").exists()


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from keras_mmsa.training import RunConfig, train_and_evaluate

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 9:   # mid-epoch 2 (of 38 batches)
                os.kill(os.getpid(), signal.SIGKILL)

    config = RunConfig.from_json(sys.argv[1])
    kill = sys.argv[3] == "kill"
    train_and_evaluate(config, sys.argv[2], verbose=0, export=False, callbacks=[Kill()] if kill else [])
    """
)


def _run(script, config_path, workdir, mode):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", script, str(config_path), str(workdir), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_resume_after_sigkill_reaches_the_uninterrupted_state(tmp_path, data_dir):
    """SIGKILL mid-epoch 2, then the same command: the weights, optimizer slots, memories, RNG state, metrics,
    the whole history.json and TensorBoard's epoch scalars equal those of an uninterrupted run (issue 11 #3, #4)."""
    config = _config(jit_compile=False, deterministic=True, train={"epochs": 2, "log_every": 5})
    config_path = tmp_path / "c.json"
    config.to_json(config_path)
    killed = _run(_KILLER, config_path, tmp_path / "a", "kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_a = tmp_path / "a" / "mmim_sample_seed7"
    assert json.loads((run_a / "backup" / "state.json").read_text())["epoch"] == 1
    resumed = _run(_KILLER, config_path, tmp_path / "a", "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = _run(_KILLER, config_path, tmp_path / "b", "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    run_b = tmp_path / "b" / "mmim_sample_seed7"
    a = np.load(run_a / "backup" / "epoch-2.npz")
    b = np.load(run_b / "backup" / "epoch-2.npz")
    assert a.files == b.files
    for key in a.files:  # every weight, optimizer slot, memory and RNG state
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ma = json.loads((run_a / "metrics.json").read_text())
    mb = json.loads((run_b / "metrics.json").read_text())
    assert ma == mb
    # the whole history survives the kill: every metric of both epochs, equal to the uninterrupted run's
    ha = json.loads((run_a / "history.json").read_text())
    hb = json.loads((run_b / "history.json").read_text())
    assert ha["epoch"] == [1, 2] and sorted(ha) == sorted(hb)
    for key, values in hb.items():
        assert len(ha[key]) == len(values) == 2, (key, ha[key], values)
        np.testing.assert_allclose(ha[key], values, rtol=1e-6, err_msg=key)
    # TensorBoard has every epoch's train and validation scalars although log_every=5 divides no epoch's
    # last step (38, 76); the per-step curves keep one point every 5 steps
    train = _tensorboard_steps(run_b / "logs" / "train")
    validation = _tensorboard_steps(run_b / "logs" / "validation")
    for tag in ("epoch_loss", "epoch_task", "epoch_lr_main"):
        assert train.get(tag) == [0, 1], (tag, train.get(tag), sorted(train))
    for tag in ("epoch_loss", "epoch_mae", "epoch_corr"):
        assert validation.get(tag) == [0, 1], (tag, validation.get(tag), sorted(validation))
    steps = {s for tag, points in train.items() if tag.startswith("batch_") for s in points}
    assert sorted(steps) == list(range(5, 2 * 38 + 1, 5))


def _tensorboard_steps(log_dir):
    """{tag: [steps]} of the scalars in one TensorBoard log folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    out = {tag: [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]}
    out.update({tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]})
    return out


def test_run_seeds_writes_mean_and_std(tmp_path, data_dir):
    config = _config(jit_compile=False, train={"epochs": 1})
    aggregate = run_seeds(config, seeds=(1, 2), workdir=tmp_path, verbose=0)
    saved = json.loads((tmp_path / "mmim_sample_seeds.json").read_text())
    assert set(saved["seeds"]) == {"1", "2"}
    maes = [saved["seeds"][s]["mae"] for s in ("1", "2")]
    assert np.isclose(aggregate["mae"]["mean"], np.mean(maes))
    assert np.isclose(aggregate["mae"]["std"], np.std(maes))
    assert maes[0] != maes[1]  # different seeds, different runs
    assert "±" in (tmp_path / "mmim_sample_seeds.md").read_text()


def test_existing_run_with_another_config_is_refused(finished_run):
    run_dir, _ = finished_run
    other = _config(jit_compile=True, seed=7, train={"epochs": 3, "log_every": 2})
    with pytest.raises(ValueError, match="different configuration"):
        train_and_evaluate(other, run_dir.parent, verbose=0)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("method", "unknown method 'nope'"),
        ("manual_dir", "is not a directory"),
        ("corrupt_pickle", "unaligned_50.pkl"),
        ("backbone", "/no/such/backbone"),
        ("set", "unknown key"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(case, expected, tmp_path, capsys, data_dir):
    argv = ["--method", "mmim", "--workdir", str(tmp_path / "runs"), "--epochs", "1"]
    if case == "method":
        argv[1] = "nope"
    elif case == "manual_dir":
        argv += ["--dataset", "mosi_unaligned", "--manual-dir", str(tmp_path / "missing")]
    elif case == "corrupt_pickle":
        manual = tmp_path / "MOSI"
        manual.mkdir()
        (manual / "unaligned_50.pkl").write_bytes(b"this is not a pickle")
        argv += [
            "--dataset",
            "mosi_unaligned",
            "--manual-dir",
            str(manual),
            "--text-backbone",
            "tiny",
        ]
        argv += ["--data-dir", str(tmp_path / "tfds")]
    elif case == "backbone":
        argv += ["--text-backbone", "/no/such/backbone"]
    elif case == "set":
        argv += ["--set", "colour=blue"]
    code = train_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0]
    assert "Traceback" not in err[0]


def test_cli_process_exit_code_and_debug_traceback(tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--method", "nope"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="")
    env.pop(
        "TF_CPP_MIN_LOG_LEVEL"
    )  # as a user's shell has it: the CLI must keep TensorFlow quiet itself
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 2
    from keras_mmsa.training.registry import METHODS

    assert plain.stderr.strip().splitlines() == [
        f"error: unknown method 'nope'; known methods: {', '.join(METHODS)} "
        "(run with --debug for the traceback)"
    ]
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
