"""`EFLSTM` through the shared base-model harness, its masked batch norm and h against numpy, and the workflow."""

import keras
import numpy as np
import pytest
from aligned_toy import LENGTH, toy_mae
from harness import ALIGNED_SHAPES, check_base_model, spec_batch

from keras_mmsa import backbones
from keras_mmsa.models import EFLSTM, Supervised
from keras_mmsa.training import RunConfig, registry

TINY = dict(hidden_dim=6, num_layers=1)


def tiny_ef_lstm(**kwargs):
    backbone = backbones.load_text_backbone("tiny")[0]
    return EFLSTM(backbone, **{"audio_dim": 5, "vision_dim": 20, **TINY, **kwargs})


def test_base_model_contract():
    keras.utils.set_random_seed(0)
    base = tiny_ef_lstm(dropout=0.2)
    _, tokenizer = backbones.load_text_backbone("tiny")
    model = check_base_model(
        base,
        spec_batch(tokenizer, aligned=True),
        EFLSTM.optimizers_from_settings(EFLSTM.preset("sample")["train"]),
        shapes=ALIGNED_SHAPES,
    )
    assert isinstance(model, Supervised) and set(model.stages()[0].groups) == {"main"}
    assert EFLSTM.requires_aligned
    backbone_ids = {id(v) for v in base.text_encoder.weights}
    assert backbone_ids and not backbone_ids & {id(v) for v in base.trainable_variables}
    assert base.feature_dims == {"text": base.text_dim, "audio": 5, "vision": 20}
    assert base.fusion_dim == TINY["hidden_dim"]
    # one fit batch updated the batch norm's moving statistics from the real tokens only
    assert not np.allclose(np.array(base.norm.moving_mean), 0.0)


def test_h_is_the_masked_mean_of_the_batch_normalised_tokens():
    keras.utils.set_random_seed(1)
    base = tiny_ef_lstm(dropout=0.0)
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = spec_batch(tokenizer, aligned=True)
    mask = np.array(x["padding_mask"])
    tokens = np.array(base._token_states(x))
    fused = np.concatenate([tokens, x["audio"], x["vision"]], axis=-1)
    valid = fused[mask]  # [real tokens, features]
    mean, var = valid.mean(axis=0), valid.var(axis=0)
    normed = (fused - mean) / np.sqrt(var + 1e-5)  # scale 1, offset 0 at initialisation
    expected = (normed * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    out = base.forward(x, training=True)
    h = np.concatenate([np.array(out["h"][m]) for m in ("text", "audio", "vision")], axis=-1)
    np.testing.assert_allclose(h, expected, rtol=1e-3, atol=1e-4)
    # the training call moved the moving statistics by PyTorch's momentum 0.1, from the real tokens only
    moving_mean, moving_var = np.array(base.norm.moving_mean), np.array(base.norm.moving_variance)
    np.testing.assert_allclose(moving_mean, 0.1 * mean, rtol=1e-3, atol=1e-5)
    # in inference h reads the moving statistics
    out = base.forward(x, training=False)
    normed = (fused - moving_mean) / np.sqrt(moving_var + 1e-5)
    expected = (normed * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        np.array(out["h"]["audio"]), expected[:, -25:-20], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("training", [False, True])
def test_padding_positions_do_not_change_the_output(training):
    keras.utils.set_random_seed(2)
    base = tiny_ef_lstm(dropout=0.0, num_layers=2)  # training=True: batch statistics, no dropout
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = spec_batch(tokenizer, aligned=True)
    out = np.array(base(x, training=training))
    pad = ~np.array(x["padding_mask"])
    rng = np.random.default_rng(5)
    noisy = dict(x)
    for m, dim in (("audio", 5), ("vision", 20)):
        noisy[m] = np.where(pad[..., None], rng.normal(size=(8, 50, dim)) * 100, x[m]).astype(
            "float32"
        )
    noisy["token_ids"] = np.where(pad, rng.integers(5, 100, size=(8, 50)), x["token_ids"]).astype(
        "int32"
    )
    np.testing.assert_allclose(np.array(base(noisy, training=training)), out, rtol=1e-4, atol=1e-5)


def test_unaligned_inputs_and_modalities():
    base = tiny_ef_lstm(modalities=["text", "vision"])
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = spec_batch(tokenizer)  # vision [8, 16, 20]: not one frame per token
    with pytest.raises(ValueError, match=r"word-aligned inputs: 'vision' must be \[B, 50, 20\]"):
        base.forward(x)
    x, _ = spec_batch(tokenizer, aligned=True)
    out = base.forward({k: x[k] for k in base.input_keys()})
    assert set(out["h"]) == {"text", "vision"} and tuple(out["z"].shape) == (8, 6)
    with pytest.raises(NotImplementedError, match="forward"):
        base.fuse(out["h"])
    with pytest.raises(ValueError, match="needs 'text'"):
        tiny_ef_lstm(modalities=["audio"])


def test_registry_and_run_config_fill_the_mmsa_presets():
    assert registry.get_method("ef_lstm") is EFLSTM
    mosi = RunConfig(method="ef_lstm", dataset="mosi_aligned").resolved()
    assert mosi.model == {"hidden_dim": 128, "num_layers": 4, "dropout": 0.5}
    assert (mosi.train["batch_size"], mosi.train["lr_main"], mosi.train["weight_decay"]) == (
        32,
        1e-3,
        5e-3,
    )
    assert mosi.train["patience"] == 8 and mosi.train["lr_patience"] is None
    assert mosi.train["clipnorm"] is None
    assert mosi.text_backbone == "bert_base_en_uncased"
    assert mosi.name == "ef_lstm_mosi_aligned_seed1111"
    mosei = RunConfig(method="ef_lstm", dataset="mosei_aligned").resolved()
    assert mosei.model == {"hidden_dim": 256, "num_layers": 2, "dropout": 0.4}
    assert (mosei.train["batch_size"], mosei.train["lr_main"], mosei.train["weight_decay"]) == (
        128,
        5e-3,
        1e-4,
    )
    sims = EFLSTM.preset("sims")
    assert sims["model"] == {"hidden_dim": 32, "num_layers": 3, "dropout": 0.5}
    assert (sims["train"]["batch_size"], sims["train"]["lr_main"]) == (128, 5e-4)
    sample = EFLSTM.preset("sample")
    assert sample["text_backbone"] == "tiny" and sample["model"] == mosi.model
    optimizers = EFLSTM.optimizers_from_settings(mosi.train)
    assert set(optimizers) == {"main"} and optimizers["main"].weight_decay == 5e-3
    with pytest.raises(ValueError, match="not ef_lstm hyper-parameters"):
        RunConfig(method="ef_lstm", dataset="mosi_aligned", model={"alpha": 1.0}).resolved()


@pytest.mark.large
def test_learns_the_aligned_toy_set_from_words_and_audio():
    # measured: EF-LSTM 0.41, text-only 0.82, constant 1.31 (test MAE)
    mae, constant = toy_mae(EFLSTM, None, hidden_dim=16, num_layers=1, dropout=0.0)
    text_only, _ = toy_mae(EFLSTM, ["text"], hidden_dim=16, num_layers=1, dropout=0.0)
    assert mae < 0.5 * constant
    assert mae < 0.75 * text_only  # the audio half of the label is read from the aligned frames


@pytest.mark.large  # ~40-90 s on 2 cores: the SavedModel's tokenizer and word-placement graph
def test_serve_text_of_a_word_aligned_run_takes_frames_per_word(tmp_path):
    """A run on word-aligned data exports `serve_text` taking audio/vision per whitespace word: it lays them on
    the tokens as training did, and refuses a row count that is not the text's word count."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the serve_text signature's tokenizer ops)

    from keras_mmsa.data import pipeline
    from keras_mmsa.training.export import export_saved_model

    keras.utils.set_random_seed(0)
    model = tiny_ef_lstm()
    _, tokenizer = backbones.load_text_backbone("tiny")
    lengths = {"text": LENGTH, "audio": LENGTH, "vision": LENGTH}
    model.build(
        {"token_ids": (None, LENGTH), "audio": (None, LENGTH, 5), "vision": (None, LENGTH, 20)}
    )
    info = pipeline.dataset_info("sample_aligned")
    assert info.alignment == "words"
    export_saved_model(model, tmp_path / "export", tokenizer=tokenizer, info=info, lengths=lengths)

    rng = np.random.default_rng(0)
    texts = ["a good film", "bad", "it was fine i guess"]
    counts = np.array([3, 1, 5], np.int32)
    words = {"audio": rng.normal(size=(3, 6, 5)), "vision": rng.normal(size=(3, 6, 20))}
    words = {
        k: (v * (np.arange(6)[None, :, None] < counts[:, None, None])).astype("float32")
        for k, v in words.items()
    }
    # what training feeds the model for these texts and word rows (the pipeline's own placement)
    x = {k: np.array(v) for k, v in pipeline.tokenize_batch(tokenizer, texts, LENGTH).items()}
    placed = pipeline.expand_word_frames(
        tokenizer, texts, {k: tf.RaggedTensor.from_tensor(v, lengths=counts) for k, v in words.items()},
        x["token_ids"], x["padding_mask"],
    )  # fmt: skip
    for m in ("audio", "vision"):
        x[m] = np.array(placed[m])
        x[f"{m}_lengths"] = np.array(placed["lengths"], np.int32)
        # the first word's first piece sits right after [CLS]; [CLS] itself gets zeros
        np.testing.assert_allclose(x[m][:, 1], words[m][:, 0], atol=1e-6)
        assert not np.any(x[m][:, 0])
    expected = np.asarray(model(x, training=False))

    serve_text = tf.saved_model.load(str(tmp_path / "export")).signatures["serve_text"]
    request = {"text": tf.constant(texts)}
    for m in ("audio", "vision"):
        request[m] = tf.constant(words[m])
        request[f"{m}_lengths"] = tf.constant(counts)
    np.testing.assert_allclose(serve_text(**request)["sentiment"].numpy(), expected, atol=1e-5)
    for bad in ([2, 1, 5], [3, 1, 7]):  # one word short; more words than rows
        with pytest.raises(tf.errors.InvalidArgumentError):
            serve_text(**{**request, "audio_lengths": tf.constant(bad, tf.int32)})
