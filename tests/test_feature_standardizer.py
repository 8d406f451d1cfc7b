"""FeatureStandardizer (masked training-split statistics) and MMIM's opt-in `standardize` flag."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa import backbones
from keras_mmsa.data import pipeline
from keras_mmsa.layers.feature_standardizer import FeatureStandardizer
from keras_mmsa.models import MMIM, BertLSTMMLP


def _padded(seed=0, n=12, steps=6, dim=4, offset=190.0):
    """Frames with a large offset in dim 0 (like F0 in Hz), a constant dim 3, and garbage in the padding."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, dim)) * np.array([50.0, 0.03, 1.0, 0.0]) + np.array(
        [offset, 0.5, -2.0, 7.0]
    )
    lengths = rng.integers(1, steps + 1, size=n)
    valid = np.arange(steps)[None, :] < lengths[:, None]
    x[~valid] = 1e4  # padding must never count
    return x.astype("float32"), lengths.astype("int32"), valid


def test_adapt_uses_valid_frames_only_and_matches_numpy():
    x, lengths, valid = _padded()
    layer = FeatureStandardizer()
    layer.adapt(x, lengths)
    frames = x[valid].astype(np.float64)
    np.testing.assert_allclose(layer.mean.numpy(), frames.mean(0), rtol=1e-6, atol=1e-6)
    expected_std = frames.std(0)
    expected_std[3] = 1.0  # constant dimension: centred only
    np.testing.assert_allclose(layer.std.numpy(), expected_std, rtol=1e-5)

    out = keras.ops.convert_to_numpy(layer(x, lengths))
    assert np.all(out[~valid] == 0.0)
    np.testing.assert_allclose(out[valid][:, :3].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[valid][:, :3].std(0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(out[valid][:, 3], 0.0, atol=1e-5)


def test_streaming_batches_equal_one_array_even_with_a_large_offset():
    x, lengths, _ = _padded(seed=1, n=40, offset=1e5)
    whole, streamed = FeatureStandardizer(), FeatureStandardizer()
    whole.adapt(x, lengths)
    ds = tf.data.Dataset.from_tensor_slices((x, lengths)).batch(7)
    streamed.adapt(ds)
    np.testing.assert_allclose(streamed.mean.numpy(), whole.mean.numpy(), rtol=1e-7)
    np.testing.assert_allclose(streamed.std.numpy(), whole.std.numpy(), rtol=1e-5)
    # Small spread on a large offset: a float32 or unshifted sum-of-squares would lose it.
    assert abs(whole.std.numpy()[1] - 0.03) < 0.01


def test_identity_before_adapt_and_xla_call():
    x, lengths, valid = _padded(seed=2)
    layer = FeatureStandardizer()
    call = tf.function(lambda a, b: layer(a, b), jit_compile=True)
    out = call(tf.constant(x), tf.constant(lengths)).numpy()
    np.testing.assert_allclose(out[valid], x[valid])
    layer.adapt(x, lengths)
    out = call(tf.constant(x), tf.constant(lengths)).numpy()
    assert np.all(out[~valid] == 0.0) and abs(out[valid][:, 0].mean()) < 1e-3


def test_serialization_round_trip_keeps_the_statistics(tmp_path):
    x, lengths, _ = _padded(seed=3)
    layer = FeatureStandardizer(epsilon=1e-4, name="std_a")
    layer.adapt(x, lengths)
    inputs = keras.Input((6, 4)), keras.Input((), dtype="int32")
    model = keras.Model(inputs, layer(*inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict([x, lengths], verbose=0), model([x, lengths]))
    assert restored.get_layer("std_a").epsilon == 1e-4


@pytest.mark.parametrize(
    "data, lengths, message",
    [
        (np.full((2, 3, 4), np.nan, "float32"), None, "NaN or inf"),
        (np.ones((2, 3, 4), "float32"), np.zeros(2, "int32"), "no valid frame"),
        (np.ones((2, 4), "float32"), None, r"expected frames \[B, T, D\]"),
    ],
)
def test_bad_statistics_input_is_a_clear_error(data, lengths, message):
    with pytest.raises(ValueError, match=message):
        FeatureStandardizer(name="audio_standardizer").adapt(data, lengths)


# ---------------------------------------------------------------------------------------------------------
# MMIM flag
# ---------------------------------------------------------------------------------------------------------


def _mmim(**kwargs):
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    base_keys = {"standardize", "modalities"}
    base = BertLSTMMLP(
        backbone,
        audio_dim=4,
        vision_dim=3,
        **{k: v for k, v in kwargs.items() if k in base_keys},
    )
    model = MMIM(base, batch_size=8, **{k: v for k, v in kwargs.items() if k not in base_keys})
    model.build({"token_ids": (None, 12), "audio": (None, 6, 4), "vision": (None, 5, 3)})
    return model, tokenizer


def _inputs(tokenizer, n=12):
    x, lengths, _ = _padded(seed=4, n=n)
    rng = np.random.default_rng(5)
    inputs = dict(pipeline.tokenize_batch(tokenizer, ["a good movie"] * n, 12))
    inputs.update(
        audio=x,
        audio_lengths=lengths,
        vision=rng.normal(size=(n, 5, 3)).astype("float32"),
        vision_lengths=np.full((n,), 5, "int32"),
    )
    return inputs


def test_mmim_standardizes_audio_with_the_adapted_statistics():
    model, tokenizer = _mmim(standardize=["audio"])
    assert list(model.backbone.standardizers) == ["audio"]
    inputs = _inputs(tokenizer)
    labels = np.linspace(-3, 3, len(inputs["audio"])).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(5)
    model.adapt(ds)
    layer = model.backbone.standardizers["audio"]
    valid = np.arange(6)[None, :] < inputs["audio_lengths"][:, None]
    np.testing.assert_allclose(
        layer.mean.numpy(), inputs["audio"][valid].mean(0), rtol=1e-5, atol=1e-5
    )
    # h_a is the encoder applied to the standardised frames; vision is left as it is.
    h = model.compute_features(inputs, training=False)["h"]
    scaled = (inputs["audio"] - layer.mean.numpy()) / layer.std.numpy()
    scaled[~valid] = 0.0
    expected = model.backbone.encoders["audio"](scaled, inputs["audio_lengths"], training=False)
    np.testing.assert_allclose(h["audio"], expected, rtol=1e-5, atol=1e-5)
    expected_v = model.backbone.encoders["vision"](
        inputs["vision"], inputs["vision_lengths"], training=False
    )
    np.testing.assert_allclose(h["vision"], expected_v, rtol=1e-5, atol=1e-5)
    # The statistics are weights: they survive get_weights/set_weights into a fresh model.
    twin = MMIM.from_config(model.get_config())
    twin.build({"token_ids": (None, 12), "audio": (None, 6, 4), "vision": (None, 5, 3)})
    twin.set_weights(model.get_weights())
    np.testing.assert_allclose(twin.backbone.standardizers["audio"].std.numpy(), layer.std.numpy())


def test_mmim_standardize_flag_validation_and_defaults():
    model, _ = _mmim()
    assert model.backbone.standardizers == {} and model.backbone.get_config()["standardize"] == []
    with pytest.raises(ValueError, match="standardize takes modalities"):
        _mmim(standardize=["text"])
    with pytest.warns(UserWarning, match="dropping the terms"):  # the text-only model says so once
        text_only, _ = _mmim(standardize="audio", modalities=["text"])
    assert text_only.backbone.standardizers == {}  # an unused modality is ignored


def test_mmim_adapt_without_the_standardised_modality_is_a_clear_error():
    model, tokenizer = _mmim(standardize=["audio"])
    inputs = {k: v for k, v in _inputs(tokenizer).items() if not k.startswith("audio")}
    ds = tf.data.Dataset.from_tensor_slices((inputs, np.zeros(12, "float32"))).batch(4)
    with pytest.raises(ValueError, match="carry no 'audio'/audio_lengths"):
        model.adapt(ds)
