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
