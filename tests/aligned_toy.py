"""A word-aligned toy regression set for the learning tests of the aligned base models (EF-LSTM, MFN)."""

import numpy as np
import tensorflow as tf

from keras_mmsa.data import pipeline

WORDS = {"great": 2.0, "good": 1.0, "fine": 0.0, "bad": -1.0, "awful": -2.0}
LENGTH = 24


def aligned_toy_split(tokenizer, n, seed):
    """`n` examples of word-aligned inputs (24 tokens, audio 5 / vision 20 features) whose label is planted
    half in the words (a sentiment word's value) and half in the audio frames of the words (an offset of
    feature 0 shared by every word of the clip). Returns `(x, y)` as numpy."""
    rng = np.random.default_rng(seed)
    words = list(WORDS)
    texts, text_value = [], []
    for _ in range(n):
        word = words[rng.integers(len(words))]
        filler = " ".join(
            rng.choice(["the", "movie", "was", "really", "a", "plot"], rng.integers(1, 8))
        )
        texts.append(f"{filler} {word}")
        text_value.append(WORDS[word])
    x = {k: np.array(v) for k, v in pipeline.tokenize_batch(tokenizer, texts, LENGTH).items()}
    tokens = x["padding_mask"].sum(axis=1).astype("int32")
    position = np.arange(LENGTH)[None, :]
    on_words = ((position >= 1) & (position < tokens[:, None] - 1))[..., None]
    offset = rng.uniform(-1.0, 1.0, size=n)
    audio = rng.normal(size=(n, LENGTH, 5)) * 0.5
    audio[..., 0] += offset[:, None]
    x["audio"] = (audio * on_words).astype("float32")
    x["vision"] = (rng.normal(size=(n, LENGTH, 20)) * on_words).astype("float32")
    x["audio_lengths"] = x["vision_lengths"] = tokens
    y = np.clip(np.array(text_value) + 1.5 * offset, -3, 3).astype("float32")
    return x, y


def as_dataset(x, y, batch_size, shuffle_seed=None):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(y), seed=shuffle_seed)
    return ds.batch(batch_size)


def toy_mae(cls, modalities, **kwargs):
    """Test MAE of base model `cls` (alone, `Supervised`) trained 10 epochs on the toy set, and the constant
    predictor's: `(mae, constant_mae)`."""
    import keras

    from keras_mmsa import backbones
    from keras_mmsa.models import Supervised

    backbone, tokenizer = backbones.load_text_backbone("tiny")
    x_train, y_train = aligned_toy_split(tokenizer, 320, seed=0)
    x_test, y_test = aligned_toy_split(tokenizer, 128, seed=1)
    keras.utils.set_random_seed(0)
    base = cls(backbone, audio_dim=5, vision_dim=20, modalities=modalities, **kwargs)
    model = Supervised(base)
    model.build(
        {"token_ids": (None, LENGTH), "audio": (None, LENGTH, 5), "vision": (None, LENGTH, 20)}
    )
    model.compile(optimizers={"main": keras.optimizers.Adam(3e-3)}, jit_compile=False)
    model.fit(as_dataset(x_train, y_train, 32, shuffle_seed=0), epochs=10, verbose=0)
    prediction = model.predict(as_dataset(x_test, y_test, 64), verbose=0)
    constant = np.median(y_train)
    return float(np.abs(prediction - y_test).mean()), float(np.abs(y_test - constant).mean())
