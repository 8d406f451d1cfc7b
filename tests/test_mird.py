"""MIRD on tiny configs: shapes and serialization, the two stages' variable groups (CLUB networks only in the
club stage, never in the model stage), per-sample weights 0 (unlabeled) out of the task gradient, the ablation
flags, the optimizer groups and warm-up, presets; marked large: learning on the sample and `scripts/train.py`."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import SHAPES, spec_batch

from keras_mmsa import backbones
from keras_mmsa.models import MIRD
from keras_mmsa.models.mird import LinearWarmup, club_pairs
from keras_mmsa.training import RunConfig, registry

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(
    latent_dim=8,
    text_hidden=8,
    audio_hidden=4,
    vision_hidden=4,
    decoder_hidden=8,
    regressor_hidden=8,
    club_hidden=8,
    attention_dim=8,
    club_steps=2,
)
CLUB_NAMES = {
    "club_v_s",
    "club_l_s",
    "club_a_s",
    "club_v_l",
    "club_v_a",
    "club_l_a",
    "club_xv_s",
    "club_xl_s",
    "club_xa_s",
}


@pytest.fixture(scope="module")
def tokenizer():
    return backbones.load_text_backbone("tiny")[1]


def tiny_mird(seed=0, compile=True, total_steps=None, **kwargs):
    """A built MIRD over a fresh tiny BERT, compiled to run eagerly (no trace of the unrolled club stage)."""
    keras.utils.set_random_seed(seed)
    backbone = backbones.load_text_backbone("tiny")[0]
    model = MIRD(backbone, audio_dim=5, vision_dim=20, **{**TINY, **kwargs})
    model.build(SHAPES)
    if compile:
        train = MIRD.preset("sample")["train"]
        model.compile(optimizers=model.optimizers_for(train, total_steps), run_eagerly=True)
    return model


def _snapshot(groups):
    return {g: [np.array(v) for v in vs] for g, vs in groups.items()}


def _moved(before, groups):
    return {
        g: any(not np.allclose(b, np.array(v)) for b, v in zip(before[g], groups[g]))
        for g in groups
    }


def test_shapes_pairs_and_serialization_round_trip(tokenizer):
    model = tiny_mird(compile=False, text_reconstruction="embedding")
    x, y = spec_batch(tokenizer)
    features = model.compute_features(x)
    assert set(features["z"]) == {"shared", "text", "audio", "vision"}
    for z in features["z"].values():
        assert tuple(z.shape) == (8, 8)
    assert tuple(features["x"]["text"].shape) == (8, 64)  # the tiny BERT's embedding width
    assert tuple(features["x"]["audio"].shape) == (8, 5)
    prediction = np.array(model(x))
    assert prediction.shape == (8,) and np.all(np.isfinite(prediction))
    assert {name for name, _, _ in model.pairs} == CLUB_NAMES
    assert ("club_v_l", ("z", "vision"), ("z", "text")) in model.pairs  # q(z^L | z^V)
    assert ("club_xa_s", ("x", "audio"), ("z", "shared")) in model.pairs  # q(z^S | X̄^A)
    assert len(club_pairs(["text", "audio"])) == 3 + 2  # S-L, S-A, L-A; X_L-S, X_A-S
    # the input summaries are detached inputs: nothing flows back into BERT through them
    with tf.GradientTape() as tape:
        out = model.compute_features(x)
        total = tf.reduce_sum(out["x"]["text"]) + tf.reduce_sum(out["text_embeddings"])
    assert all(g is None for g in tape.gradient(total, model.variable_groups()["bert"]))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert (clone.text_reconstruction, clone.latent_dim, clone.club_steps) == ("embedding", 8, 2)
    clone.build(SHAPES)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.array(clone(x)), prediction, atol=1e-5)
    # the XLA trace agrees with the eager call
    jitted = tf.function(lambda inputs: model(inputs), jit_compile=True)
    np.testing.assert_allclose(np.array(jitted(x)), prediction, atol=1e-4)


def test_club_stage_trains_only_the_club_networks_and_the_model_stage_never_does(tokenizer):
    model = tiny_mird()
    groups = model.variable_groups()
    ids = [id(v) for vs in groups.values() for v in vs]
    assert len(ids) == len(set(ids)) == len(model.trainable_variables)
    assert [s.name for s in model.stages()] == ["club", "model"]
    assert model.stages()[0].repeats == 2 and model.stages()[0].groups == ("club",)
    # the club stage alone (a batch carrying stage id 0): only the CLUB networks move, club_steps times
    before = _snapshot(groups)
    logs = model.train_on_batch(*spec_batch(tokenizer, stage=0), return_dict=True)
    assert _moved(before, groups) == {"bert": False, "main": False, "club": True}
    assert int(model.stage_optimizers["club"].iterations) == 2
    assert np.isfinite(logs["club_loss"])
    # the model stage alone: everything but the CLUB networks moves
    before = _snapshot(groups)
    logs = model.train_on_batch(*spec_batch(tokenizer, stage=1, seed=1), return_dict=True)
    assert _moved(before, groups) == {"bert": True, "main": True, "club": False}
    # both stages on a plain batch: T' club updates per model update, every log finite
    logs = model.train_on_batch(*spec_batch(tokenizer, seed=2), return_dict=True)
    assert int(model.stage_optimizers["club"].iterations) == 4
    assert int(model.stage_optimizers["bert"].iterations) == 2
    assert int(model.stage_optimizers["main"].iterations) == 2
    expected = {"task", "recon", "recon_text", "recon_audio", "recon_vision", "mim", "club_loss"}
    assert expected | CLUB_NAMES <= set(logs)
    assert all(np.isfinite(v) for v in logs.values()), logs
    # eq. 21: L = L_reg + beta L_recon + alpha L_mim (alpha 0.1, beta 1)
    np.testing.assert_allclose(
        logs["loss"], logs["task"] + logs["recon"] + 0.1 * logs["mim"], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(logs["mim"], sum(logs[n] for n in CLUB_NAMES), rtol=1e-4, atol=1e-5)


def test_unlabeled_examples_leave_the_task_gradient_untouched(tokenizer):
    """Weight-0 examples: changing their labels changes neither L_reg nor its gradient; changing their inputs
    changes the reconstruction and CLUB terms (they use every example)."""
    model = tiny_mird(compile=False, dropout=0.0)
    x, y = spec_batch(tokenizer)
    weights = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    y_other = y.copy()
    y_other[4:] += 5.0
    model_stage = model.stages()[-1]
    variables = model.variable_groups()["main"] + model.variable_groups()["bert"]

    def task_and_grads(inputs, labels):
        with tf.GradientTape() as tape:
            features = model.compute_features(inputs, training=False)
            _, logs = model.compute_stage_losses(
                model_stage, features, inputs, labels, sample_weight=weights
            )
        grads = tape.gradient(logs["task"], variables)
        return logs, [
            np.zeros(v.shape) if g is None else np.array(tf.convert_to_tensor(g))
            for g, v in zip(grads, variables)
        ]

    logs, grads = task_and_grads(x, y)
    logs_other, grads_other = task_and_grads(x, y_other)
    np.testing.assert_allclose(float(logs["task"]), float(logs_other["task"]), rtol=1e-6)
    for a, b in zip(grads, grads_other):
        np.testing.assert_allclose(a, b, atol=1e-7)
    assert any(np.abs(g).max() > 0 for g in grads)
    # without weights the same label change moves the task loss
    _, plain = model.compute_stage_losses(model_stage, model.compute_features(x), x, y)
    _, plain_other = model.compute_stage_losses(model_stage, model.compute_features(x), x, y_other)
    assert abs(float(plain["task"]) - float(plain_other["task"])) > 1e-3
    # the unlabeled rows' inputs do enter reconstruction and CLUB
    x_other = dict(x)
    x_other["audio"] = np.array(x["audio"]).copy()
    x_other["audio"][4:] += 3.0
    logs_x, _ = task_and_grads(x_other, y)
    np.testing.assert_allclose(float(logs["task"]), float(logs_x["task"]), rtol=1e-6)
    assert abs(float(logs["recon_audio"]) - float(logs_x["recon_audio"])) > 1e-3
    assert abs(float(logs["club_xa_s"]) - float(logs_x["club_xa_s"])) > 1e-6


@pytest.mark.parametrize(
    "flags",
    [
        {"use_club": False},
        {"use_reconstruction": False},
        {"use_input_club": False},
        {"use_club": False, "use_reconstruction": False},
    ],
)
def test_ablation_flags_remove_their_terms(tokenizer, flags):
    model = tiny_mird(**flags)
    logs = model.train_on_batch(*spec_batch(tokenizer), return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()), logs
    use_club = flags.get("use_club", True)
    use_recon = flags.get("use_reconstruction", True)
    assert ("club" in model.variable_groups()) == use_club
    assert [s.name for s in model.stages()] == (["club", "model"] if use_club else ["model"])
    assert ("recon" in logs) == use_recon and bool(model.decoders) == use_recon
    club_logs = {k for k in logs if k.startswith("club_")}
    if not use_club:
        assert not club_logs and "mim" not in logs and not model.clubs
        assert "club" not in model.stage_optimizers
    elif not flags.get("use_input_club", True):
        assert club_logs == {n for n in CLUB_NAMES if "_x" not in n} | {"club_loss"}
    expected = logs["task"]
    if use_recon:
        expected += logs["recon"]
    if use_club:
        expected += 0.1 * logs["mim"]
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4, atol=1e-5)


def test_text_reconstruction_targets():
    tokens = tiny_mird(compile=False, text_reconstruction="tokens")
    embedding = tiny_mird(compile=False, text_reconstruction="embedding")
    vocab = tokens.text_backbone.vocabulary_size
    assert tokens.decoders["text"].output_dim == vocab
    assert embedding.decoders["text"].output_dim == embedding.text_backbone.hidden_dim
    with pytest.raises(ValueError, match="text_reconstruction"):
        tiny_mird(compile=False, text_reconstruction="chars")
    with pytest.raises(ValueError, match="at least one of them"):
        MIRD(backbones.load_text_backbone("tiny")[0], audio_dim=5, modalities=["text"])


def test_optimizer_groups_and_warmup_then_decay():
    train = dict(MIRD.preset("mosi")["train"])
    groups = MIRD.optimizers_from_settings(train, total_steps=1000)
    assert isinstance(groups["bert"], keras.optimizers.AdamW)
    assert type(groups["main"]) is keras.optimizers.Adam
    assert type(groups["club"]) is keras.optimizers.Adam
    assert float(groups["club"].learning_rate) == pytest.approx(1e-3)
    schedule = groups["bert"]._learning_rate
    assert isinstance(schedule, LinearWarmup)
    assert (schedule.warmup_steps, schedule.total_steps) == (100, 1000)
    rates = [float(schedule(s)) for s in (0, 50, 100, 550, 1000)]
    np.testing.assert_allclose(rates, [0.0, 5e-6, 1e-5, 5e-6, 0.0], atol=1e-12)
    # the workflow's total steps: ceil(examples / batch) * epochs (unlabeled examples included)
    from keras_mmsa.models.mird.mird import total_steps

    assert total_steps(600, 32, 8) == 19 * 8
    assert MIRD.preset("sample")["train"]["lr_patience"] is None
    model = tiny_mird(compile=False, use_club=False)
    assert "club" not in model.optimizers_for(train, 10) and model.lr_decay_groups() == ("main",)


def test_presets_registry_and_run_config():
    assert registry.get_method("mird") is MIRD
    config = RunConfig(method="mird").resolved()
    assert config.dataset == "sample" and config.text_backbone == "tiny"
    assert config.model["club_steps"] == 5 and config.model["latent_dim"] == 64
    assert MIRD.preset("mosi")["model"]["alpha"] == 0.1
    assert MIRD.preset("mosei_unaligned")["model"]["alpha"] == 1.0
    assert MIRD.preset("sims")["text_backbone"] == "bert_base_zh"
    off = RunConfig(method="mird", model={"use_club": False}).resolved()
    assert off.name != config.name
    with pytest.raises(ValueError, match="model.use_club"):
        RunConfig(method="mird", model={"use_club": "no"}).resolved()


@pytest.mark.large
def test_learns_on_the_sample_beyond_the_constant_predictor(tmp_path, monkeypatch):
    """`model.fit` on the bundled sample (short sequences, 4 epochs, XLA): test MAE below the constant
    predictor's 1.26 (the sample's documented baseline)."""
    import keras_mmsa
    from keras_mmsa.data import pipeline
    from keras_mmsa.metrics import msa_metrics

    monkeypatch.setenv("KMSA_DATA_DIR", str(tmp_path))
    keras.utils.set_random_seed(1)
    backbone, tok = backbones.load_text_backbone("tiny")
    pipeline.prepare_builder("sample")
    short = {"audio": 64, "vision": 64}
    train = keras_mmsa.data.load("sample", "train", 32, text_backbone=tok, max_lengths=short)
    test = keras_mmsa.data.load(
        "sample", "test", 32, text_backbone=tok, max_lengths=short, shuffle=False
    )
    model = MIRD(backbone, audio_dim=5, vision_dim=20)
    model.build({"token_ids": (None, 50), "audio": (None, 64, 5), "vision": (None, 64, 20)})
    model.compile(optimizers=model.optimizers_for(MIRD.preset("sample")["train"], 19 * 4))
    history = model.fit(train, epochs=4, verbose=0)
    for key in ("task", "recon", "mim", "club_loss"):
        assert np.all(np.isfinite(history.history[key])), key
    y = np.concatenate([b[1].numpy() for b in test])
    p = model.predict(test, verbose=0)
    result = msa_metrics(y, p, family="mosi")
    constant = np.mean(np.abs(y - np.median(y)))
    assert result["mae"] < constant - 0.1, (result, constant)


@pytest.mark.large
def test_train_script_with_no_option_writes_metrics(tmp_path):
    """`python scripts/train.py --method mird` on the bundled sample, in a fresh process: metrics.json, and
    the nine CLUB estimates as TensorBoard tags."""
    env = dict(os.environ, KMSA_DATA_DIR=str(tmp_path / "tfds"))
    workdir = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--method", "mird",
         "--workdir", str(workdir), "--verbose", "0", "--no-export"],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list(workdir.iterdir())
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["method"] == "mird" and np.isfinite(result["test"]["mae"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "logs" / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    for name in CLUB_NAMES | {"task", "recon", "mim", "club_loss", "lr_bert"}:
        assert f"epoch_{name}" in tags, (name, sorted(tags))


# ------------------------------------------------------------------------------- unlabeled data in the workflow


def test_unlabeled_examples_join_the_stream_with_weight_zero():
    from keras_mmsa.data import staging
    from keras_mmsa.training.run import with_unlabeled

    def examples(n, offset):
        inputs = {"audio": np.full((n, 2), offset, "float32"), "extra": np.zeros((n,), "int32")}
        return tf.data.Dataset.from_tensor_slices((inputs, np.full((n,), 2.0, "float32")))

    labeled = examples(6, 1.0).map(lambda i, y: ({"audio": i["audio"]}, y))
    mixed = with_unlabeled(labeled, examples(4, -1.0))  # the unlabeled side's extra key is dropped
    stream, steps = staging.epoch_stream(mixed, batch_size=4, seed=0, num_epochs=1, num_examples=10)
    assert steps == 3
    rows = [
        (float(x["audio"][i, 0]), float(y[i]), float(w[i]))
        for x, y, w in stream
        for i in range(len(y))
    ]
    assert sorted(rows) == sorted([(1.0, 2.0, 1.0)] * 6 + [(-1.0, 0.0, 0.0)] * 4)
    assert [r[0] for r in rows] != sorted(r[0] for r in rows)  # shuffled together


def test_run_config_names_the_unlabeled_dataset():
    plain = RunConfig(method="mird").resolved()
    semi = RunConfig(method="mird", unlabeled_dataset="sample_unlabeled").resolved()
    assert semi.name == "mird_sample_plus-sample_unlabeled_seed1111" != plain.name
    with pytest.raises(ValueError, match="unlabeled_dataset"):
        RunConfig(method="mird", unlabeled_dataset=3).resolved()
    from keras_mmsa.training.cli import config_from_args, train_parser

    args = train_parser().parse_args(
        ["--method", "mird", "--unlabeled-dataset", "sample_unlabeled"]
    )
    assert config_from_args(args).unlabeled_dataset == "sample_unlabeled"


@pytest.mark.large
def test_train_script_mixes_an_unlabeled_dataset(tmp_path):
    """`train.py --method mird --unlabeled-dataset sample_unlabeled` (1 epoch, short sequences): the run
    trains on 600 + 600 examples, so (ceil(1200 / 32) = 38 steps) twice the plain run's 19."""
    env = dict(os.environ, KMSA_DATA_DIR=str(tmp_path / "tfds"))
    workdir = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--method", "mird",
         "--unlabeled-dataset", "sample_unlabeled", "--epochs", "1", "--workdir", str(workdir),
         "--verbose", "2", "--no-export", "--set", "max_lengths.audio=24",
         "--set", "max_lengths.vision=24", "--set", "model.club_steps=1"],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list(workdir.iterdir())
    assert (
        json.loads((run_dir / "config.json").read_text())["unlabeled_dataset"] == "sample_unlabeled"
    )
    assert np.isfinite(json.loads((run_dir / "metrics.json").read_text())["test"]["mae"])
    assert "Training on 600 labeled and 600 unlabeled examples" in out.stdout
    assert "38/38" in out.stdout, out.stdout[-2000:]


def test_standardize_fits_on_train_batches_and_feeds_every_reader(tokenizer):
    """`standardize=["audio"]`: `adapt` fits the statistics, then WSA, the encoder, X̄^A and the audio
    reconstruction target all read the standardised frames (padding stays 0); the setting round-trips."""
    x, y = spec_batch(tokenizer)
    x = dict(x, audio=np.asarray(x["audio"]) * 50.0 + 190.0)  # an F0-like scale
    lengths = np.asarray(x["audio_lengths"])
    model = tiny_mird(compile=False, standardize=["audio"])
    with pytest.raises(ValueError, match="standardize"):
        tiny_mird(compile=False, standardize=["text"])
    before = np.array(model.compute_features(x)["x"]["audio"])
    model.adapt([(x, y)])
    features = model.compute_features(x)
    frames = np.array(features["inputs"]["audio"])
    valid = np.arange(frames.shape[1])[None, :] < lengths[:, None]
    np.testing.assert_allclose(frames[valid].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(frames[valid].std(0), 1.0, atol=1e-3)
    assert np.all(frames[~valid] == 0.0)
    summary = np.array(features["x"]["audio"])
    assert np.abs(summary).max() < 5 < np.abs(before).max()  # X̄^A reads the standardised frames
    recon = model.reconstruction_losses(features, features["inputs"])["audio"]
    raw = model.reconstruction_losses(features, x)["audio"]
    assert float(recon) < float(raw)  # the target is the standardised sequence, not the raw one
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert clone.standardize == ["audio"]


def test_club_probe_recovers_the_closed_form_club_value():
    """A probe q fitted on y = x + ε (x ~ N(0, I_d), ε ~ N(0, σ² I_d)) reaches the true conditional, whose
    CLUB value is d/σ² (E log q(y|x) − E_{x⊥y} log q(y|x) = −d/2 + d(2 + σ²)/(2σ²)); an independent pair
    gives ~0. Held-out rows score it."""
    from keras_mmsa.models.mird.probe import fit_and_estimate

    rng = np.random.default_rng(0)
    d, sigma2, n = 2, 1.0, 1536
    x = rng.normal(size=(n, d)).astype("float32")
    data = {
        ("z", "a"): x,
        ("z", "b"): x + np.sqrt(sigma2) * rng.normal(size=(n, d)).astype("float32"),
        ("z", "c"): rng.normal(size=(n, d)).astype("float32"),
    }
    fit = {k: v[:1024] for k, v in data.items()}
    held_out = {k: v[1024:] for k, v in data.items()}
    pairs = [("dep", ("z", "a"), ("z", "b")), ("indep", ("z", "a"), ("z", "c"))]
    est = fit_and_estimate(
        pairs, fit, held_out, hidden_dim=16, logvar_bound=None, steps=600, learning_rate=1e-2
    )
    assert abs(est["dep"] - d / sigma2) < 0.35, est
    assert abs(est["indep"]) < 0.15, est


def test_club_probe_callback_logs_every_pair_without_touching_the_global_rng(tokenizer, tmp_path):
    """`training_callbacks` gives the probe only when `train.club_probe` is set; the probe logs all nine
    pairs (also for a model without CLUB networks) and their sum, and leaves Keras' global seed alone."""
    x, y = spec_batch(tokenizer)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = tiny_mird(use_club=False)  # compiled to run eagerly: so is the probe's reader
    data = {"train_examples": ds.unbatch(), "validation": ds}
    assert model.training_callbacks(data, {"club_probe": False}) == []
    (probe,) = model.training_callbacks(data, {"club_probe": True})
    probe.probe_kwargs.update(steps=20)
    probe.set_model(model)
    from keras.src.random.seed_generator import global_seed_generator  # no public accessor

    state = np.array(global_seed_generator().state)
    logs = {}
    probe.on_epoch_end(0, logs)
    assert {k[len("probe_") :] for k in logs} == CLUB_NAMES | {"sum"}
    assert all(np.isfinite(v) for v in logs.values())
    np.testing.assert_array_equal(np.array(global_seed_generator().state), state)
    # the probe holds nothing the model's weights reach: saving and loading stay as before
    model.save_weights(tmp_path / "after_probe.weights.h5")
    model.load_weights(tmp_path / "after_probe.weights.h5")
    assert len(model.weights) == len(tiny_mird(compile=False, use_club=False).weights)
