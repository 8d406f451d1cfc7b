"""Misuse of the workflow (issue 11, items 5, 6 and 8): run names that collide, failed starts that block the
corrected command, names that escape the workdir, two processes on one run directory, bad values caught before
anything runs (one line, exit 2), and serving signatures that refuse bad inputs instead of answering NaN.

Most checks train nothing: they stop at validation, before the first epoch.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa.training import RunConfig
from keras_mmsa.training.cli import _one_line, config_from_args, train_main, train_parser

SMALL = ["--set", "max_lengths.audio=8", "--set", "max_lengths.vision=8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    old = os.environ.get("KMSA_DATA_DIR")
    os.environ["KMSA_DATA_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("KMSA_DATA_DIR", None)
    else:
        os.environ["KMSA_DATA_DIR"] = old


def _train(argv, capsys):
    code = train_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _name(argv):
    return config_from_args(train_parser().parse_args(["--method", "mmim", *argv])).resolved().name


# ---------------------------------------------------------------------------------------------- item 5: names
def test_default_names_distinguish_what_differs():
    assert _name([]) == "mmim_sample_seed1111"
    assert _name(["--seed", "3"]) == "mmim_sample_seed3"
    # The README's commands: plain, then with overrides; they must not share a run directory.
    readme = _name(
        ["--set", "model.alpha=0.1", "--set", "train.lr_main=5e-4", "--epochs", "3", "--no-jit"]
    )
    assert readme != "mmim_sample_seed1111" and readme.endswith("_seed1111")
    assert _name(["--set", "model.alpha=0.2"]) not in (readme, "mmim_sample_seed1111")
    assert "text-audio" in _name(["--modalities", "text,audio"])
    other = _name(["--text-backbone", "/presets/bert_base_en_uncased"])
    assert "bert_base_en_uncased" in other and other.endswith("_seed1111")
    # Stable: the same settings give the same name; a value equal to the preset's changes nothing.
    assert _name(["--set", "model.alpha=0.1"]) == _name(["--set", "model.alpha=0.1"])
    assert _name(["--set", "model.alpha=0.3"]) == "mmim_sample_seed1111"
    assert _name(["--name", "mine"]) == "mine"


def test_seed_sweep_names_do_not_repeat_the_seed(tmp_path, monkeypatch):
    from keras_mmsa.training import seeds

    names = []

    def fake(config, workdir, **kw):
        names.append(config.name)
        return {"test": {"mae": 1.0 + config.seed, "corr": 0.5}}

    monkeypatch.setattr(seeds, "train_and_evaluate", fake)
    seeds.run_seeds(RunConfig(method="mmim"), seeds=(1, 2), workdir=tmp_path, verbose=0)
    assert names == ["mmim_sample_seed1", "mmim_sample_seed2"]
    assert (tmp_path / "mmim_sample_seeds.json").exists()
    names.clear()
    seeds.run_seeds(RunConfig(method="mmim", name="x"), seeds=(1,), workdir=tmp_path, verbose=0)
    assert names == ["x_seed1"]


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs_run", "a/b", "..", "."])
def test_names_that_escape_the_workdir_are_refused(name, tmp_path, capsys):
    workdir = tmp_path / "w" / "runs"
    code, err = _train(["--method", "mmim", "--workdir", str(workdir), "--name", name], capsys)
    assert code == 2 and len(err) == 1 and "--name" in err[0], err
    assert not (tmp_path / "escaped").exists() and not workdir.exists()


def test_a_failed_start_writes_nothing(tmp_path, capsys, data_dir):
    workdir = tmp_path / "runs"
    argv = ["--method", "mmim", "--workdir", str(workdir), "--epochs", "1", "--no-export", *SMALL]
    code, err = _train([*argv, "--text-backbone", "/no/such/backbone"], capsys)
    assert code == 2 and "/no/such/backbone" in err[0], err
    assert not list(workdir.glob("*/config.json"))
    # A build-time error (after the backbone and the data loaded) leaves nothing behind either.
    code, err = _train([*argv, "--set", "model.polarity=bogus"], capsys)
    # (TFDS prepares the sample first: its progress bars come before the error line)
    assert code == 2 and "polarity" in err[-1], err
    assert not list(workdir.glob("*/config.json"))


def test_a_start_that_never_finished_an_epoch_does_not_block_the_corrected_command(tmp_path):
    from keras_mmsa.training import run

    old = RunConfig(method="mmim", name="r", train={"lr_main": 0.5}).resolved()
    new = RunConfig(method="mmim", name="r").resolved()
    run_dir = tmp_path / "r"
    (run_dir / "logs").mkdir(parents=True)
    old.to_json(run_dir / "config.json")
    run._check_existing_config(run_dir, new)  # no finished epoch: the stale start is cleared
    assert not (run_dir / "config.json").exists() and not (run_dir / "logs").exists()
    # After an epoch (a backup exists) the refusal stands, and it says which flag to add.
    old.to_json(run_dir / "config.json")
    (run_dir / "backup").mkdir()
    (run_dir / "backup" / "state.json").write_text("{}")
    with pytest.raises(ValueError, match="different configuration") as info:
        run._check_existing_config(run_dir, new)
    assert "--name" in str(info.value) and "train.lr_main" in str(info.value)


_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
    f = open(sys.argv[1], "a+")
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush()
    print("locked", flush=True)
    time.sleep(120)
    """
)


def test_two_processes_cannot_train_in_one_run_directory(tmp_path, capsys, data_dir):
    workdir = tmp_path / "runs"
    run_dir = workdir / "mmim_sample_seed1111"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = ["--method", "mmim", "--workdir", str(workdir), "--epochs", "1", "--no-export"]
        code, err = _train([*argv, *SMALL], capsys)
        assert code == 2 and len(err) == 1, err
        assert str(run_dir) in err[0] and str(holder.pid) in err[0], err
        assert not (run_dir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------------------------------------- item 6: values
@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--epochs", "0"], ["train.epochs", "0", ">= 1"]),
        (["--epochs", "-1"], ["train.epochs", "-1"]),
        (["--batch-size", "0"], ["train.batch_size", "0"]),
        (["--batch-size", "-4"], ["train.batch_size", "-4"]),
        (["--set", "model.alpha=abc"], ["model.alpha", "'abc'", "float"]),
        (["--set", "seed=abc"], ["seed", "'abc'", "int", "--seed"]),
        (["--set", "model.bidirectional=1"], ["model.bidirectional", "bool"]),
        (["--set", "train.lr_main=NaN"], ["train.lr_main", "finite"]),
        (["--set", "max_lengths.audio=0"], ["max_lengths.audio", "0"]),
        (["--set", "modalities=text"], ["modalities", "list"]),
        (["--set", "jit_compile=yes"], ["jit_compile", "bool"]),
    ],
)
def test_bad_values_are_one_line_and_exit_2_before_anything_is_written(
    extra, expected, tmp_path, capsys
):
    workdir = tmp_path / "runs"
    code, err = _train(["--method", "mmim", "--workdir", str(workdir), *extra], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for part in expected:
        assert part in err[0], (part, err[0])
    assert not workdir.exists()


def test_good_values_of_a_compatible_type_pass():
    config = RunConfig(
        method="mmim", model={"alpha": 1, "bidirectional": True, "standardize": ["audio"]}
    ).resolved()
    assert config.model["alpha"] == 1
    RunConfig(method="mmim", model={"variance_free": True}).resolved()  # an __init__ default's type
    with pytest.raises(ValueError, match="model.variance_free"):
        RunConfig(method="mmim", model={"variance_free": "true"}).resolved()


def test_long_messages_keep_their_advice():
    long = ValueError("differs in " + ", ".join(f"key{i}" for i in range(300)) + "; add --name x")
    line = _one_line(long)
    assert len(line) <= 600 and line.endswith("add --name x") and line.startswith("differs in")


# ---------------------------------------------------------------------------------------------- item 8: serving
LENGTHS = {"text": 16, "audio": 8, "vision": 8}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from keras_mmsa import backbones
    from keras_mmsa.models import MMIM
    from keras_mmsa.training.export import export_saved_model

    backbone, tokenizer = backbones.load_text_backbone("tiny")
    model = MMIM.from_config_name("sample", text_backbone=backbone)
    model.build(
        {
            "token_ids": (None, LENGTHS["text"]),
            "audio": (None, LENGTHS["audio"], model.audio_dim),
            "vision": (None, LENGTHS["vision"], model.vision_dim),
        }
    )
    out = tmp_path_factory.mktemp("export")
    export_saved_model(model, out / "full", tokenizer=tokenizer, lengths=LENGTHS)
    export_saved_model(
        model, out / "features", tokenizer=tokenizer, lengths=LENGTHS, text_signature=False
    )
    return model, tokenizer, out


def _inputs(model, tokenizer):
    from keras_mmsa.data.pipeline import tokenize_batch

    rng = np.random.default_rng(0)
    texts = tf.constant(["a good film", "bad", "it was fine i guess"])
    x = dict(tokenize_batch(tokenizer, texts, LENGTHS["text"]))
    for m, dim in (("audio", model.audio_dim), ("vision", model.vision_dim)):
        x[m] = tf.constant(rng.normal(size=(3, LENGTHS[m], dim)), tf.float32)
        x[f"{m}_lengths"] = tf.constant([8, 3, 1], tf.int32)
    return texts, x


def test_serve_matches_the_model_and_refuses_bad_inputs(exported):
    import tensorflow_text  # noqa: F401  (the serve_text signature's tokenizer ops)

    model, tokenizer, out = exported
    texts, x = _inputs(model, tokenizer)
    expected = np.asarray(model(x, training=False))
    loaded = tf.saved_model.load(str(out / "full"))
    serve, serve_text = loaded.signatures["serve"], loaded.signatures["serve_text"]
    np.testing.assert_allclose(serve(**x)["sentiment"].numpy(), expected, atol=1e-5)
    features = {k: v for k, v in x.items() if k not in ("token_ids", "padding_mask", "segment_ids")}
    np.testing.assert_allclose(
        serve_text(text=texts, **features)["sentiment"].numpy(), expected, atol=1e-5
    )
    for key, bad in [
        ("audio_lengths", [8, -5, 1]),
        ("audio_lengths", [0, 3, 1]),
        ("vision_lengths", [8, 3, 10000]),
    ]:
        for fn, args in ((serve, x), (serve_text, {"text": texts, **features})):
            with pytest.raises(tf.errors.InvalidArgumentError, match=key):
                fn(**{**args, key: tf.constant(bad, tf.int32)})
    for key in ("audio", "vision"):
        nan = x[key].numpy()
        nan[1, 0, 0] = np.nan
        for fn, args in ((serve, x), (serve_text, {"text": texts, **features})):
            with pytest.raises(tf.errors.InvalidArgumentError, match=f"'{key}'"):
                fn(**{**args, key: tf.constant(nan)})


_LOAD_WITHOUT_TF_TEXT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    assert "serve_text" not in loaded.signatures, list(loaded.signatures)
    assert "tensorflow_text" not in sys.modules
    x = {k: tf.constant(v) for k, v in np.load(sys.argv[2]).items()}
    np.save(sys.argv[3], loaded.signatures["serve"](**x)["sentiment"].numpy())
    """
)


def test_the_features_only_savedmodel_loads_without_tensorflow_text(exported, tmp_path):
    model, tokenizer, out = exported
    _, x = _inputs(model, tokenizer)
    np.savez(tmp_path / "x.npz", **{k: v.numpy() for k, v in x.items()})
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_TF_TEXT, str(out / "features"), str(tmp_path / "x.npz"),
         str(tmp_path / "y.npy")],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), np.asarray(model(x, training=False)), atol=1e-5
    )


def test_readme_says_what_serving_needs():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "import tensorflow_text" in readme and "--features-only" in readme
    assert json.dumps("INVALID_ARGUMENT")[1:-1] in readme
