"""Tiny learning checks that run unchanged on every trainer backend (the default suite: TensorFlow;
`tests/test_jax_trainer.py` runs this file again under KERAS_BACKEND=jax).

A synthetic set where the label is planted in the text (a positive or a negative sentence: ±1.5) and in the
audio (+0.5 x the mean of its first feature): after a handful of steps, the base model alone
(`Supervised(BertLSTMMLP)`) and MMIM (per-epoch alternation, both stages) must beat the best constant
predictor (the median) on the training set.

MMIM on 32 examples is noisy on both backends (its MI terms; the MAE after an epoch jumps by up to 2x from one
epoch to the next on TensorFlow and on JAX alike), so its check takes the best epoch, as
`test_mmim.test_mmim_learns_the_planted_signal_beyond_text` does, with small MI weights (alpha = beta = 0.05).
Measured here (seed 0, 12 epochs): best MAE 0.46 on TensorFlow, 0.79 on JAX (constant 1.51).
"""

import keras
import numpy as np
import tensorflow as tf
from harness import SHAPES, spec_batch, tiny_base, tiny_mmim

from keras_mmsa import backbones
from keras_mmsa.models import MMIM, BertLSTMMLP, Supervised

N = 32


def synthetic(tokenizer, n=N, seed=0):
    """`(x, y)`: spec_batch inputs with the label planted in the text (±1.5) and in the audio."""
    x, _ = spec_batch(tokenizer, n=n, seed=seed)
    x = {k: np.asarray(v) for k, v in x.items()}
    sign = np.where(
        np.arange(n) % 2 == 1, 1.5, -1.5
    )  # spec_batch: odd rows "really good", even "terrible"
    y = (sign + 0.5 * x["audio"][:, :, 0].mean(axis=1)).astype("float32")
    return x, y


def dataset(x, y, batch=16):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def constant_mae(y):
    return float(np.mean(np.abs(y - np.median(y))))


def train_mae(model, x, y):
    return float(np.mean(np.abs(np.asarray(model.predict(dataset(x, y), verbose=0)) - y)))


def fit_supervised(epochs=12, seed=0):
    """A tiny `Supervised(BertLSTMMLP)` fitted on the synthetic set; returns `(model, x, y)`."""
    keras.utils.set_random_seed(seed)
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, y = synthetic(tokenizer)
    model = Supervised(tiny_base())
    model.build(SHAPES)
    train = dict(BertLSTMMLP.preset("sample")["train"], lr_main=3e-3)
    model.compile(optimizers=BertLSTMMLP.optimizers_from_settings(train), jit_compile=True)
    model.fit(dataset(x, y), epochs=epochs, verbose=0)
    return model, x, y


def fit_mmim(epochs=12, seed=0):
    """A tiny MMIM (per-epoch alternation: an lld pass then a main pass each epoch) on the synthetic set,
    validated on it after each epoch."""
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, y = synthetic(tokenizer)
    model = tiny_mmim(seed=seed, batch_size=16, compile=False, alpha=0.05, beta=0.05)
    model.compile(**MMIM.default_optimizers("sample", lr_main=3e-3), jit_compile=True)
    history = model.fit(dataset(x, y), validation_data=dataset(x, y), epochs=epochs, verbose=0)
    return model, x, y, history


def test_supervised_bert_lstm_mlp_beats_the_constant_predictor():
    model, x, y = fit_supervised()
    mae, constant = train_mae(model, x, y), constant_mae(y)
    print(f"{keras.backend.backend()}: Supervised MAE {mae:.3f} vs constant {constant:.3f}")
    assert mae < 0.6 * constant, (mae, constant)


def test_mmim_beats_the_constant_predictor_and_runs_both_stages():
    model, x, y, history = fit_mmim()
    mae, constant = min(history.history["val_loss"]), constant_mae(y)
    print(f"{keras.backend.backend()}: MMIM best MAE {mae:.3f} vs constant {constant:.3f}")
    assert mae < 0.6 * constant, (mae, constant)
    assert {"loss", "lld", "lr_q", "lr_main"} <= set(history.history), sorted(history.history)
    assert all(np.isfinite(v) for k in ("loss", "lld") for v in history.history[k])
    epochs = len(history.history["loss"])
    # Algorithm 1 on 2 batches: 2 lld updates and 2 main updates per epoch
    assert int(model.stage_optimizers["q"].iterations) == 2 * epochs
    assert int(model.stage_optimizers["main"].iterations) == 2 * epochs
