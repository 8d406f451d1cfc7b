"""Cached frozen-backbone text features: the model reads them with the result of running the backbone, the
pipeline attaches them in order, and a TFN run trains the same with and without them."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import spec_batch

from keras_mmsa import backbones
from keras_mmsa.data import attach_text_features, compute_text_features
from keras_mmsa.models import TFN

TINY = dict(text_hidden=8, audio_hidden=4, vision_hidden=6, text_out=5, post_fusion_dim=7)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    base = TFN(backbone, audio_dim=5, vision_dim=20, **TINY)
    x, y = spec_batch(tokenizer)
    base.build()
    return base, x, y


def test_encode_with_cached_features_equals_running_the_backbone(tiny):
    base, x, _ = tiny
    features = base.text_features(x)
    assert tuple(features.shape) == (8, 50, 64) and features.dtype == "float32"
    plain, cached = base.forward(x), base.forward({**x, "text_features": features})
    np.testing.assert_array_equal(np.array(cached["h"]["text"]), np.array(plain["h"]["text"]))
    np.testing.assert_array_equal(np.array(cached["prediction"]), np.array(plain["prediction"]))
    # the features are what the model reads: other features, another text representation
    other = base.forward({**x, "text_features": features + 1.0})
    assert not np.allclose(np.array(other["h"]["text"]), np.array(plain["h"]["text"]))


def test_pipeline_attaches_each_example_its_own_features(tiny):
    base, x, y = tiny
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    encode = tf.function(base.text_features)
    features = compute_text_features(examples.batch(3), encode)
    assert features.shape == (8, 50, 64)
    attached = attach_text_features(examples, features).batch(5)
    assert (
        int(attached.cardinality()) == 2
    )  # known, as for the plain dataset (Keras counts its steps)
    for inputs, _ in attached:
        assert set(inputs) == set(x) | {"text_features"}
        np.testing.assert_allclose(
            inputs["text_features"].numpy(), base.text_features(inputs).numpy(), atol=1e-5
        )


@pytest.mark.large
def test_a_tfn_run_trains_the_same_with_and_without_the_cache(tmp_path, monkeypatch):
    from keras_mmsa.training import RunConfig, train_and_evaluate

    monkeypatch.setenv("KMSA_DATA_DIR", str(tmp_path / "tfds"))
    histories = {}
    for cache in (True, False):
        config = RunConfig(
            method="tfn",
            model=TINY,
            train={"epochs": 2, "cache_text_features": cache},
            max_lengths={"audio": 24, "vision": 24},
            jit_compile=False,
            name=f"tfn_cache_{cache}",
        )
        train_and_evaluate(config, tmp_path / "runs", verbose=0, export=cache)
        history = json.loads((tmp_path / "runs" / config.name / "history.json").read_text())
        histories[cache] = {k: v for k, v in history.items() if k.startswith(("loss", "val_"))}
    for key, values in histories[False].items():
        np.testing.assert_allclose(histories[True][key], values, rtol=1e-4, err_msg=key)
    # the SavedModel of the cached run still takes token ids
    loaded = tf.saved_model.load(str(tmp_path / "runs" / "tfn_cache_True" / "export"))
    signature = loaded.signatures["serve"].structured_input_signature[1]
    assert "token_ids" in signature and "text_features" not in signature


@pytest.mark.parametrize("name", ["ef_lstm", "mfn"])
def test_word_aligned_models_read_the_cached_features(name):
    """EF-LSTM and MFN (`AlignedTextBackbone`) read `text_features` in place of the backbone, same result."""
    from keras_mmsa.training import registry

    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    small = {
        "ef_lstm": dict(hidden_dim=4, num_layers=1),
        "mfn": dict(
            text_hidden=4,
            audio_hidden=3,
            vision_hidden=3,
            memory_dim=5,
            attention_units=4,
            proposal_units=4,
        ),
    }[name]
    cls = registry.get_method(name)
    base = cls(backbone, audio_dim=5, vision_dim=20, **small)
    x, _ = spec_batch(tokenizer, aligned=True)
    features = base.text_features(x)
    plain, cached = base.forward(x), base.forward({**x, "text_features": features})
    np.testing.assert_allclose(
        np.array(cached["prediction"]), np.array(plain["prediction"]), atol=1e-6
    )
    other = base.forward({**x, "text_features": features + 1.0})
    assert not np.allclose(np.array(other["z"]), np.array(plain["z"]))
    assert cls.preset("mosi")["train"]["cache_text_features"] is True
