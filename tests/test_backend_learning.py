"""Tiny learning checks that run unchanged on every trainer backend (the default suite: TensorFlow;
`.ci/run`'s JAX job runs this file again under KERAS_BACKEND=jax), one per method.

A synthetic set where the label is planted in the text (a positive or a negative sentence: ±1.5) and in the
audio (+0.5 x the mean of its first feature): after a handful of steps, each method must beat the best constant
predictor (the median) on the training set: the base model alone (`Supervised(BertLSTMMLP)`), MMIM (per-epoch
alternation, both stages), MDM (over TFN, the f-divergence penalty), SelfMM and SelfMI (the index-keyed label
memories), MIRD (the CLUB stage before the model stage), and on JAX the six base models of MDM alone.

MMIM on 32 examples is noisy on both backends (its MI terms; the MAE after an epoch jumps by up to 2x from one
epoch to the next on TensorFlow and on JAX alike), so its check takes the best epoch, as
`test_mmim.test_mmim_learns_the_planted_signal_beyond_text` does, with small MI weights (alpha = beta = 0.05).
Measured here (seed 0, 12 epochs): best MAE 0.37 on TensorFlow, 0.79 on JAX (constant 1.51). The other methods'
checks take the best epoch too (`val_loss` on the training set is its MAE).

Cost: the file is in the default suite, which is near its budget, so every check compiles its step with XLA
only on JAX (`JIT`): on TensorFlow, XLA's compilation costs more than the few steps it speeds up (measured
here: Supervised + MMIM 116 s with XLA, 55 s without), while JAX without jit runs op by op. MIRD's graph
costs ~60 s to trace on TensorFlow, so its check runs eagerly there (51 s for 5 epochs, 84 s in a graph).
The six base models of MDM alone (EF-LSTM, TFN, LMF, MFN, MAG-BERT, MAG-XLNet) are `large` on TensorFlow
(there each base model's own tests train it: one batch in the contract check of the default suite, the
aligned ones' learning tests under -m large; MDM's check here trains TFN) and in the default selection on
JAX, where this file is their only training check.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import ALIGNED_SHAPES, SHAPES, spec_batch, tiny_base, tiny_mmim

from keras_mmsa import backbones
from keras_mmsa.models import (
    EFLSTM,
    LMF,
    MAGBERT,
    MDM,
    MFN,
    MIRD,
    MMIM,
    TFN,
    BertLSTMMLP,
    MAGXLNet,
    SelfMI,
    SelfMM,
    Supervised,
)

N = 32
ON_JAX = keras.backend.backend() == "jax"
JIT = ON_JAX  # XLA only on JAX (module docstring: the default suite's budget)


def synthetic(tokenizer, n=N, seed=0, aligned=False):
    """`(x, y)`: spec_batch inputs with the label planted in the text (±1.5) and in the audio."""
    x, _ = spec_batch(tokenizer, n=n, seed=seed, aligned=aligned)
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
    model.compile(optimizers=BertLSTMMLP.optimizers_from_settings(train), jit_compile=JIT)
    model.fit(dataset(x, y), epochs=epochs, verbose=0)
    return model, x, y


def fit_mmim(epochs=12, seed=0):
    """A tiny MMIM (per-epoch alternation: an lld pass then a main pass each epoch) on the synthetic set,
    validated on it after each epoch."""
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, y = synthetic(tokenizer)
    model = tiny_mmim(seed=seed, batch_size=16, compile=False, alpha=0.05, beta=0.05)
    model.compile(**MMIM.default_optimizers("sample", lr_main=3e-3), jit_compile=JIT)
    history = model.fit(dataset(x, y), validation_data=dataset(x, y), epochs=epochs, verbose=0)
    return model, x, y, history


def best_epoch_mae(model, x, y, epochs=8):
    """Fits `model` (built, compiled) on `(x, y)` in batches of 16, validated on the same set after each
    epoch; returns `(best val MAE, constant MAE, history)`."""
    history = model.fit(dataset(x, y), validation_data=dataset(x, y), epochs=epochs, verbose=0)
    mae, constant = min(history.history["val_loss"]), constant_mae(y)
    name = type(model).__name__
    if isinstance(model, Supervised):
        name += f"({type(model.backbone).__name__})"
    print(f"{keras.backend.backend()}: {name} best MAE {mae:.3f} vs constant {constant:.3f}")
    return mae, constant, history


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


# (class, text backbone, word-aligned inputs, settings over the sample preset's model)
BASES = {
    # the preset's 4 stacked LSTMs with dropout 0.5 need more than this check's 16 steps
    "ef_lstm": (EFLSTM, "tiny", True, dict(num_layers=1, dropout=0.0)),
    "tfn": (TFN, "tiny", False, {}),
    "lmf": (LMF, "tiny", False, {}),
    "mfn": (MFN, "tiny", True, {}),
    "mag_bert": (MAGBERT, "tiny", True, {}),
    "mag_xlnet": (MAGXLNet, "tiny_xlnet", True, {}),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if ON_JAX else pytest.mark.large) for n in BASES]
)
def test_each_mdm_base_model_alone_beats_the_constant_predictor(name):
    """Each base model at its sample preset (lr_main 3e-3), alone (`Supervised`), with its own optimizer
    groups."""
    cls, text, aligned, settings = BASES[name]
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone(text)
    x, y = synthetic(tokenizer, aligned=aligned)
    preset = cls.preset("sample")
    base = cls(backbone, audio_dim=5, vision_dim=20, **{**preset["model"], **settings})
    model = Supervised(base)
    model.build(ALIGNED_SHAPES if aligned else SHAPES)
    train = dict(preset["train"], lr_main=3e-3)
    model.compile(optimizers=cls.optimizers_from_settings(train), jit_compile=JIT)
    mae, constant, _ = best_epoch_mae(model, x, y)
    assert mae < 0.6 * constant, (name, mae, constant)


def test_mdm_beats_the_constant_predictor_and_unrolls_its_critic():
    """MDM over TFN with the f-divergence penalty: the critic takes `unroll` steps per model step."""
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    x, y = synthetic(tokenizer)
    model = MDM(TFN(backbone, audio_dim=5, vision_dim=20), penalty="f", unroll=2)
    model.build(SHAPES)
    model.compile(optimizers=model.optimizers_for(MDM.preset("sample")["train"]), jit_compile=JIT)
    mae, constant, history = best_epoch_mae(model, x, y)
    assert mae < 0.6 * constant, (mae, constant)
    steps = 2 * len(history.history["loss"])
    assert int(model.stage_optimizers["main"].iterations) == steps
    assert int(model.stage_optimizers["critic"].iterations) == 2 * steps
    assert all(np.isfinite(history.history["mdm"]))


@pytest.mark.parametrize("cls", [SelfMM, SelfMI])
def test_self_supervised_labels_beat_the_constant_predictor_and_move_off_the_human_label(cls):
    """SelfMM / SelfMI read the example index of each batch: from epoch 2 on the generated unimodal labels
    (in the label memory, by index) move off the multimodal label they start from."""
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    x, y = synthetic(tokenizer)
    x["index"] = np.arange(N, dtype="int32")
    base = BertLSTMMLP(backbone, audio_dim=5, vision_dim=20, fusion_activation="relu")
    model = cls(base, num_train_examples=N)
    model.build(SHAPES)
    train = cls.preset("sample")["train"]
    model.compile(optimizers=cls.optimizers_from_settings(train), jit_compile=JIT)
    mae, constant, history = best_epoch_mae(model, x, y)
    assert mae < 0.6 * constant, (mae, constant)
    assert float(model.epoch_counter) == len(history.history["loss"])
    np.testing.assert_allclose(np.asarray(model.label_memory)[:, 0], y)
    for m, labels in model.generated_labels().items():
        assert np.all(np.isfinite(labels)) and np.abs(labels - y).max() > 0.05, m


def test_mird_beats_the_constant_predictor_with_its_club_stage_first():
    """MIRD (tiny sizes): `club_steps` CLUB updates per batch, then the model stage."""
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    x, y = synthetic(tokenizer)
    sizes = dict(latent_dim=8, text_hidden=8, audio_hidden=4, vision_hidden=4, decoder_hidden=8)
    sizes.update(regressor_hidden=8, club_hidden=8, attention_dim=8, club_steps=2)
    model = MIRD(backbone, audio_dim=5, vision_dim=20, **sizes)
    model.build(SHAPES)
    # eagerly on TensorFlow, as test_mird.py's tiny_mird: its graph costs ~60 s to trace, more than 5 epochs
    optimizers = model.optimizers_for(MIRD.preset("sample")["train"])
    model.compile(optimizers=optimizers, jit_compile=JIT, run_eagerly=not ON_JAX)
    mae, constant, history = best_epoch_mae(model, x, y, epochs=5)
    assert mae < 0.6 * constant, (mae, constant)
    steps = 2 * len(history.history["loss"])
    assert int(model.stage_optimizers["main"].iterations) == steps
    assert int(model.stage_optimizers["club"].iterations) == 2 * steps
    assert all(np.isfinite(history.history["club_loss"]))
