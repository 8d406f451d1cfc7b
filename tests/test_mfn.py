"""`MemoryFusion` against a numpy recurrence, `MFN` through the shared base-model harness, and MFN in the workflow."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from aligned_toy import toy_mae
from harness import ALIGNED_SHAPES, check_base_model, spec_batch

from keras_mmsa import backbones
from keras_mmsa.layers import MemoryFusion
from keras_mmsa.models import MFN, Supervised
from keras_mmsa.training import RunConfig, registry

TINY = dict(
    text_hidden=6,
    audio_hidden=3,
    vision_hidden=4,
    memory_dim=5,
    attention_units=4,
    proposal_units=4,
    retain_units=4,
    update_units=4,
    output_units=4,
)


LEARN = dict(
    text_hidden=16,
    audio_hidden=8,
    vision_hidden=8,
    memory_dim=16,
    attention_units=16,
    proposal_units=16,
    retain_units=16,
    update_units=16,
    output_units=16,
    attention_dropout=0.0,
    retain_dropout=0.0,
    update_dropout=0.0,
)


def tiny_mfn(**kwargs):
    backbone = backbones.load_text_backbone("tiny")[0]
    return MFN(backbone, **{"audio_dim": 5, "vision_dim": 20, **TINY, **kwargs})


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _numpy_memory_fusion(layer, sequences, lengths):
    """MFN's recurrence (Zadeh et al. 2018, §3) one example and one valid step at a time, from the layer's
    weights; the steps past `lengths[b]` are never read."""
    weights = {v.path.split("/", 1)[1]: np.array(v) for v in layer.weights}

    def dense(name, v, relu=False):
        out = v @ weights[f"{name}/kernel"] + weights[f"{name}/bias"]
        return np.maximum(out, 0.0) if relu else out

    def net(name, v):
        return dense(f"{name}_2", dense(f"{name}_1", v, relu=True))

    hiddens = [[] for _ in layer.hidden_dims]
    memories = []
    for b, n in enumerate(lengths):
        hs = [np.zeros(d) for d in layer.hidden_dims]
        cs = [np.zeros(d) for d in layer.hidden_dims]
        u = np.zeros(layer.memory_dim)
        for t in range(n):
            new_h, new_c = [], []
            for m, d in enumerate(layer.hidden_dims):
                z = (
                    sequences[m][b, t] @ weights[f"lstm_{m}/kernel"]
                    + hs[m] @ weights[f"lstm_{m}/recurrent_kernel"]
                    + weights[f"lstm_{m}/bias"]
                )
                i, f, g, o = z[:d], z[d : 2 * d], z[2 * d : 3 * d], z[3 * d :]
                c = _sigmoid(f) * cs[m] + _sigmoid(i) * np.tanh(g)
                new_c.append(c)
                new_h.append(_sigmoid(o) * np.tanh(c))
            window = np.concatenate(cs + new_c)
            scores = net("attention", window)
            attended = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum() * window
            proposal = np.tanh(net("proposal", attended))
            both = np.concatenate([attended, u])
            u = _sigmoid(net("retain", both)) * u + _sigmoid(net("update", both)) * proposal
            hs, cs = new_h, new_c
        for m in range(len(hs)):
            hiddens[m].append(hs[m])
        memories.append(u)
    return [np.stack(h) for h in hiddens], np.stack(memories)


def test_memory_fusion_matches_numpy_recurrence_and_ignores_padding():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    layer = MemoryFusion([3, 2], memory_dim=4, attention_units=3, proposal_units=2, retain_units=3)
    lengths = np.array([2, 6, 1, 4])
    mask = np.arange(6)[None, :] < lengths[:, None]
    sequences = [rng.normal(size=(4, 6, d)).astype("float32") for d in (5, 3)]
    hiddens, memory = layer(sequences, mask)
    expected_h, expected_u = _numpy_memory_fusion(layer, sequences, lengths)
    for h, e in zip(hiddens, expected_h):
        np.testing.assert_allclose(np.array(h), e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(memory), expected_u, rtol=1e-4, atol=1e-5)
    assert np.abs(expected_u).max() > 1e-2  # the memory moved
    # garbage on the padding steps changes nothing (states are frozen after each row's last valid step)
    garbage = [np.where(mask[..., None], s, 1e3).astype("float32") for s in sequences]
    hiddens_g, memory_g = layer(garbage, mask)
    np.testing.assert_allclose(np.array(memory_g), np.array(memory), rtol=1e-6)
    # the compiled (XLA) forward pass and gradients agree with the eager ones
    variables = layer.trainable_variables

    def loss_and_grads(seqs):
        with tf.GradientTape() as tape:
            hs, u = layer(seqs, mask, training=False)
            loss = tf.reduce_sum(u**2) + sum(tf.reduce_sum(h) for h in hs)
        return loss, tape.gradient(loss, variables)

    loss, grads = loss_and_grads(sequences)
    loss_xla, grads_xla = tf.function(loss_and_grads, jit_compile=True)(sequences)
    np.testing.assert_allclose(float(loss_xla), float(loss), rtol=1e-4)
    assert all(g is not None for g in grads)
    for g, gx in zip(grads, grads_xla):
        np.testing.assert_allclose(np.array(gx), np.array(g), rtol=1e-3, atol=1e-5)
    # serialization round trip
    clone = MemoryFusion.from_config(layer.get_config())
    clone.build([s.shape for s in sequences])
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.array(clone(sequences, mask)[1]), np.array(memory), rtol=1e-6)


def test_base_model_contract():
    keras.utils.set_random_seed(0)
    base = tiny_mfn(attention_dropout=0.2, retain_dropout=0.5, output_dropout=0.1)
    _, tokenizer = backbones.load_text_backbone("tiny")
    model = check_base_model(
        base,
        spec_batch(tokenizer, aligned=True),
        MFN.optimizers_from_settings(MFN.preset("sample")["train"]),
        shapes=ALIGNED_SHAPES,
    )
    assert isinstance(model, Supervised) and set(model.stages()[0].groups) == {"main"}
    assert MFN.requires_aligned
    # the text backbone is part of the model but frozen: no variable of it is trained
    backbone_ids = {id(v) for v in base.text_encoder.weights}
    assert backbone_ids and not backbone_ids & {id(v) for v in base.trainable_variables}
    assert base.feature_dims == {"text": 6, "audio": 3, "vision": 4}
    assert base.fusion_dim == 6 + 3 + 4 + 5
    paths = [v.path for v in base.weights]
    assert len(paths) == len(set(paths))


def test_padding_steps_do_not_change_the_output():
    keras.utils.set_random_seed(1)
    base = tiny_mfn()
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = spec_batch(tokenizer, aligned=True)
    out = base.forward(x)
    # z is [final hiddens; memory]
    z = np.array(out["z"])
    np.testing.assert_allclose(z[:, :6], np.array(out["h"]["text"]), rtol=1e-6)
    np.testing.assert_allclose(z[:, 6:9], np.array(out["h"]["audio"]), rtol=1e-6)
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
    np.testing.assert_allclose(
        np.array(base(noisy)), np.array(out["prediction"]), rtol=1e-5, atol=1e-6
    )
    # a shorter padded length gives the same prediction as well
    short = {k: v[:, :20] if np.ndim(v) >= 2 else v for k, v in x.items()}
    np.testing.assert_allclose(
        np.array(base(short)), np.array(out["prediction"]), rtol=1e-5, atol=1e-6
    )


def test_unaligned_inputs_and_fuse_are_refused():
    base = tiny_mfn(modalities=["text", "audio"])
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = spec_batch(tokenizer)  # audio [8, 16, 5]: not one frame per token
    with pytest.raises(ValueError, match=r"word-aligned inputs: 'audio' must be \[B, 50, 5\]"):
        base.forward(x)
    x, _ = spec_batch(tokenizer, aligned=True)
    out = base.forward({k: x[k] for k in base.input_keys()})
    assert set(out["h"]) == {"text", "audio"} and base.fusion_dim == 6 + 3 + 5
    with pytest.raises(NotImplementedError, match="forward"):
        base.fuse(out["h"])
    with pytest.raises(ValueError, match="needs 'text'"):
        tiny_mfn(modalities=["audio", "vision"])


def test_registry_and_run_config_fill_the_mmsa_presets():
    assert registry.get_method("mfn") is MFN
    mosi = RunConfig(method="mfn", dataset="mosi_aligned").resolved()
    assert (mosi.model["text_hidden"], mosi.model["audio_hidden"], mosi.model["vision_hidden"]) == (
        256,
        32,
        256,
    )
    assert mosi.model["memory_dim"] == 400
    assert (mosi.model["attention_units"], mosi.model["attention_dropout"]) == (32, 0.2)
    assert (mosi.model["proposal_units"], mosi.model["proposal_dropout"]) == (64, 0.0)
    assert (mosi.model["retain_units"], mosi.model["retain_dropout"]) == (256, 0.7)
    assert (mosi.model["update_units"], mosi.model["update_dropout"]) == (32, 0.5)
    assert (mosi.model["output_units"], mosi.model["output_dropout"]) == (128, 0.0)
    assert (mosi.train["batch_size"], mosi.train["lr_main"], mosi.train["weight_decay"]) == (
        128,
        2e-3,
        0.0,
    )
    assert mosi.train["patience"] == 8 and mosi.train["lr_patience"] is None
    assert mosi.text_backbone == "bert_base_en_uncased" and mosi.name == "mfn_mosi_aligned_seed1111"
    mosei = RunConfig(method="mfn", dataset="mosei_aligned").resolved()
    assert (mosei.model["text_hidden"], mosei.model["memory_dim"]) == (128, 128)
    assert (mosei.model["update_units"], mosei.model["output_dropout"]) == (256, 0.5)
    assert (mosei.train["batch_size"], mosei.train["lr_main"], mosei.train["weight_decay"]) == (
        64,
        5e-4,
        1e-4,
    )
    sims = MFN.preset("sims")
    assert sims["model"]["memory_dim"] == 64 and sims["model"]["retain_dropout"] == 0.2
    assert sims["text_backbone"] == "bert_base_zh" and sims["train"]["batch_size"] == 32
    sample = MFN.preset("sample")
    assert sample["text_backbone"] == "tiny" and sample["model"] == mosi.model
    with pytest.raises(ValueError, match="not mfn hyper-parameters"):
        RunConfig(method="mfn", dataset="mosi_aligned", model={"alpha": 1.0}).resolved()


@pytest.mark.large
def test_learns_the_aligned_toy_set_from_words_and_audio():
    # measured: MFN 0.39, text-only 0.77, constant 1.31 (test MAE)
    mae, constant = toy_mae(MFN, None, **LEARN)
    text_only, _ = toy_mae(MFN, ["text"], **LEARN)
    assert mae < 0.5 * constant
    assert mae < 0.75 * text_only  # the audio half of the label is read from the aligned frames
