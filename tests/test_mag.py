"""MAG-BERT / MAG-XLNet: the gate against its closed form, the split backbone against the unsplit one, both base
models through the shared harness (word-aligned batches), their registry entries and presets."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import ALIGNED_SHAPES, check_base_model, spec_batch

from keras_mmsa import backbones
from keras_mmsa.data import pipeline
from keras_mmsa.layers import MultimodalAdaptationGate, SplitTextBackbone
from keras_mmsa.models import MAGBERT, MAGXLNet, Supervised
from keras_mmsa.training import registry
from keras_mmsa.training.config import RunConfig

SMALL = dict(num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16)
TEXTS = ["i thought the movie was really good", "it was awful", "okay"]


def _bert(seed=0):
    return backbones.tiny_text_backbone(seed=seed, **SMALL)


def _xlnet(seed=0):
    return backbones.tiny_xlnet_backbone(seed=seed, **SMALL)


def _text_batch(tokenizer, length=12):
    return {k: np.array(v) for k, v in pipeline.tokenize_batch(tokenizer, TEXTS, length).items()}


def _aligned_batch(tokenizer):
    x, y = spec_batch(tokenizer, aligned=True)
    return {k: np.array(v) for k, v in x.items()}, y


def _layer_norm(x, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _gate_closed_form(z, others, weights, beta, eps=1e-6, ln_eps=1e-5):
    """Rahman et al. 2020 §3 in numpy (layer norm with unit scale and zero offset, no dropout)."""
    shift = np.zeros_like(z)
    for x, (wg, bg, wp, bp) in zip(others, weights):
        gate = np.maximum(np.concatenate([x, z], -1) @ wg + bg, 0.0)
        shift += gate * (x @ wp + bp)
    h_norm = np.linalg.norm(shift, axis=-1)
    h_norm = np.where(h_norm == 0, 1.0, h_norm)
    alpha = np.minimum(np.linalg.norm(z, axis=-1) / (h_norm + eps) * beta, 1.0)
    return _layer_norm(z + alpha[..., None] * shift, ln_eps), alpha


def test_gate_matches_closed_form_and_clips_alpha():
    rng = np.random.default_rng(0)
    b, steps, hidden, dims = 2, 5, 4, (2, 3)
    z = rng.normal(size=(b, steps, hidden)).astype("float32")
    z[1, 2] *= 0.01  # a short state: its shift is scaled down (alpha < 1)
    others = [rng.normal(size=(b, steps, d)).astype("float32") for d in dims]
    for x in others:
        x[0, 1] = 0.0  # no nonverbal signal: only the (small) biases shift it, unscaled (alpha = 1)
    gate = MultimodalAdaptationGate(beta_shift=0.5, dropout=0.3)
    gate(z, others)
    weights = []
    for g, p in zip(gate.gates, gate.projections):
        for layer in (g, p):
            layer.kernel.assign(np.array(layer.kernel) * 3.0)
            layer.bias.assign(0.05 * rng.normal(size=layer.bias.shape).astype("float32"))
        weights.append([np.array(v) for v in (g.kernel, g.bias, p.kernel, p.bias)])
    expected, alpha = _gate_closed_form(z, others, weights, beta=0.5)
    np.testing.assert_allclose(np.array(gate(z, others)), expected, atol=1e-5)
    shift, got_alpha = gate.shift(z, others)
    np.testing.assert_allclose(np.array(got_alpha), alpha, rtol=1e-5)
    assert (alpha < 1).any() and (alpha == 1).any()
    # the shift never moves a state by more than beta_shift times its norm
    moved = np.linalg.norm(np.array(got_alpha)[..., None] * np.array(shift), axis=-1)
    assert np.all(moved <= 0.5 * np.linalg.norm(z, axis=-1) + 1e-5)
    # dropout only in training; serialization round trip
    assert not np.allclose(np.array(gate(z, others, training=True)), expected, atol=1e-3)
    clone = MultimodalAdaptationGate.from_config(gate.get_config())
    clone(z, others)
    clone.set_weights(gate.get_weights())
    np.testing.assert_allclose(np.array(clone(z, others)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="built for 2 nonverbal inputs"):
        gate(z, others[:1])


def test_gate_zero_vectors_give_finite_values_and_gradients():
    gate = MultimodalAdaptationGate(beta_shift=1.0)
    z = np.zeros((1, 3, 4), "float32")
    z[0, 2] = [1.0, -2.0, 0.5, 0.0]
    x = [np.zeros((1, 3, 2), "float32")]
    gate(z, x)
    gate.projections[0].bias.assign(np.zeros(4, "float32"))  # zero frames -> H exactly zero
    z_var, x_var = tf.Variable(z), tf.Variable(x[0])
    with tf.GradientTape() as tape:
        out = gate(z_var, [x_var])
        loss = tf.reduce_sum(out * tf.constant(np.arange(12.0, dtype="float32").reshape(1, 3, 4)))
    grads = tape.gradient(loss, [z_var, x_var, *gate.trainable_variables])
    assert np.all(np.isfinite(np.array(out)))
    assert all(np.all(np.isfinite(np.array(g))) for g in grads if g is not None)
    # H == 0: the state is only re-normalised
    np.testing.assert_allclose(np.array(out)[0, 2], _layer_norm(z[0, 2], 1e-5), atol=1e-5)


@pytest.mark.parametrize("split_index", [0, 1, 2])
def test_split_bert_reproduces_the_unsplit_backbone(split_index):
    backbone, tokenizer = _bert()
    x = _text_batch(tokenizer)
    reference = backbone({**x, "padding_mask": x["padding_mask"].astype("int32")})
    out = SplitTextBackbone(backbone, split_index)(x)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.array(out[key]), np.array(reference[key]), atol=1e-6)


def test_split_xlnet_reproduces_the_unsplit_backbone_per_sentence():
    backbone, tokenizer = _xlnet()
    x = _text_batch(tokenizer)
    split = SplitTextBackbone(backbone, 1)
    batched = split(x)
    lengths = x["padding_mask"].sum(1)
    for i in range(len(TEXTS)):
        one = {k: v[i : i + 1] for k, v in x.items()}
        # KerasHub's own XLNet is right for one sentence (its batch > 1 masks / positions mix sentences)
        reference = np.array(backbone({**one, "padding_mask": one["padding_mask"].astype("int32")}))
        single = split(one)
        np.testing.assert_allclose(np.array(single["sequence_output"]), reference, atol=1e-5)
        # a sentence's outputs do not depend on the rest of the batch
        np.testing.assert_allclose(np.array(batched["sequence_output"])[i], reference[0], atol=1e-5)
        # the summary token is the last real one, <cls>
        np.testing.assert_allclose(
            np.array(batched["pooled_output"])[i], reference[0, lengths[i] - 1], atol=1e-5
        )
        assert x["token_ids"][i, lengths[i] - 1] == tokenizer.cls_token_id


def test_split_rejects_other_backbones_and_bad_indices():
    backbone, _ = _bert()
    with pytest.raises(ValueError, match=r"split_index must be in \[0, 2\]"):
        SplitTextBackbone(backbone, 3)
    with pytest.raises(TypeError, match="BertBackbone or XLNetBackbone"):
        SplitTextBackbone(keras.layers.Dense(2), 0)
    with pytest.raises(TypeError, match="use MAGXLNet"):
        MAGBERT(_xlnet()[0], audio_dim=5, vision_dim=20)


def test_mag_bert_with_a_silent_gate_is_the_fine_tuned_bert():
    """Not re-implemented: with zero gate weights (H = 0), MAG-BERT's z is the unsplit BERT's pooled output
    (the gate's layer norm re-normalises states that BERT's unit-scale layer norm already normalised), and the
    text-only model is the plain BERT."""
    backbone, tokenizer = _bert()
    x, _ = _aligned_batch(tokenizer)
    text = {k: x[k] for k in ("token_ids", "segment_ids")}
    reference = np.array(
        backbone({**text, "padding_mask": x["padding_mask"].astype("int32")})["pooled_output"]
    )
    for k in (0, 1):
        base = MAGBERT(backbone, audio_dim=5, vision_dim=20, injection_index=k)
        base.build(ALIGNED_SHAPES)
        live = np.array(base.forward(x)["z"])
        for variable in base.gate.trainable_variables:
            if variable.path.split("/")[-1] in ("kernel", "bias"):
                variable.assign(np.zeros(variable.shape, "float32"))
        silent = np.abs(np.array(base.forward(x)["z"]) - reference).max()
        assert silent < 1e-6
        assert np.abs(live - reference).max() > 100 * silent  # with its weights, the gate changes z
    text_only = MAGBERT(backbone, modalities=["text"])
    np.testing.assert_allclose(np.array(text_only.forward(x)["z"]), reference, atol=1e-6)
    assert text_only.gate is None and set(text_only.forward(x)["h"]) == {"text"}


@pytest.mark.parametrize("cls, make", [(MAGBERT, _bert), (MAGXLNet, _xlnet)])
def test_base_model_contract(cls, make):
    keras.utils.set_random_seed(0)
    backbone, tokenizer = make()
    base = cls(backbone, audio_dim=5, vision_dim=20, dropout_mag=0.1)
    train = dict(cls.preset("sample")["train"], weight_decay=0.01)
    model = check_base_model(
        base,
        spec_batch(tokenizer, aligned=True),
        cls.optimizers_from_settings(train),
        shapes=ALIGNED_SHAPES,
    )
    assert isinstance(model, Supervised) and cls.requires_aligned
    group = cls.text_group
    assert set(model.stages()[0].groups) == {group, "main"}
    groups = base.variable_groups()
    assert {id(v) for v in groups[group]} == {
        id(v) for v in base.transformer.backbone.trainable_variables
    }
    assert base.fusion_dim == base.feature_dims["text"] == SMALL["hidden_dim"]
    x, _ = _aligned_batch(tokenizer)
    out = base.forward(x)
    # h: masked means of the aligned frames over the real tokens
    mask = x["padding_mask"][..., None]
    np.testing.assert_allclose(
        np.array(out["h"]["audio"]), (x["audio"] * mask).sum(1) / mask.sum(1), atol=1e-5
    )
    # the head is linear in z
    w, b = (np.array(v) for v in base.output_layer.weights)
    np.testing.assert_allclose(
        np.array(out["prediction"]), np.array(out["z"]) @ w[:, 0] + b[0], atol=1e-5
    )
    # the audio frames reach the prediction through the gate
    moved = dict(x, audio=x["audio"] * 3.0 + 1.0 * x["padding_mask"][..., None])
    assert np.abs(np.array(base(moved)) - np.array(out["prediction"])).max() > 1e-6
    with pytest.raises(NotImplementedError, match="forward"):
        base.fuse(out["h"])
    # biases and layer-norm parameters are spared by the weight decay
    optimizer = cls.optimizers_from_settings(train)["main"]
    assert not optimizer._use_weight_decay(base.output_layer.bias)
    assert optimizer._use_weight_decay(base.output_layer.kernel)


def test_unaligned_inputs_are_refused_with_the_expected_shape():
    backbone, tokenizer = _bert()
    base = MAGBERT(backbone, audio_dim=5, vision_dim=20)
    x, _ = spec_batch(tokenizer)  # 16 frames, not one per token
    with pytest.raises(ValueError, match=r"'audio' must be \[B, 50, 5\].*aligned"):
        base(x)


def test_registry_and_presets():
    assert registry.get_method("mag_bert") is MAGBERT
    assert registry.get_method("mag_xlnet") is MAGXLNet
    config = RunConfig(method="mag_bert", dataset="mosi_aligned").resolved()
    assert config.model == dict(
        injection_index=0, beta_shift=1.0, dropout_mag=0.3, dropout_head=0.1
    )
    assert config.train["lr_bert"] == config.train["lr_main"] == 2e-5
    assert config.train["batch_size"] == 32 and config.train["weight_decay"] == 0.0
    assert config.train["patience"] == 8 and config.text_backbone == "bert_base_en_uncased"
    mosei = MAGBERT.preset("mosei_aligned")
    assert mosei["train"]["lr_bert"] == 1e-5 and mosei["model"]["dropout_mag"] == 0.2
    sims = MAGBERT.preset("sims")
    assert sims["train"]["lr_main"] == 5e-5 and sims["model"]["dropout_mag"] == 0.1
    xlnet = RunConfig(method="mag_xlnet", dataset="mosi_aligned").resolved()
    assert xlnet.model == dict(injection_index=1, beta_shift=1.0, dropout_mag=0.5, dropout_head=0.1)
    assert xlnet.train["lr_xlnet"] == xlnet.train["lr_main"] == 1e-5
    assert xlnet.train["batch_size"] == 48 and xlnet.train["weight_decay"] == 0.01
    assert xlnet.train["epochs"] == 40 and xlnet.train["patience"] is None
    needed = {
        "batch_size",
        "epochs",
        "patience",
        "lr_patience",
        "lr_factor",
        "log_every",
        "clipnorm",
    }
    for cls, tiny in ((MAGBERT, "tiny"), (MAGXLNet, "tiny_xlnet")):
        sample = cls.preset("sample")
        assert sample["text_backbone"] == tiny
        assert needed | {"weight_decay", "lr_main", f"lr_{cls.text_group}"} <= set(sample["train"])
        assert set(cls.model_keys()) == set(sample["model"])


def _aligned_sample(tokenizer, split, length=24):
    """The bundled `sample` split made word-aligned: each clip's mean audio/vision frame on every word token
    (zeros on the special tokens and padding), the layout of the aligned contract."""
    from keras_mmsa_datasets.msa import sample

    records = sample.generate_split(split)
    x = {
        k: np.array(v)
        for k, v in pipeline.tokenize_batch(tokenizer, [r["text"] for r in records], length).items()
    }
    count = x["padding_mask"].sum(1)
    rows = np.arange(len(count))
    words = x["padding_mask"].copy()
    specials = (
        (count - 2, count - 1) if getattr(tokenizer, "specials_at_end", False) else (0, count - 1)
    )
    for position in specials:
        words[rows, position] = False
    for m in ("audio", "vision"):
        clip = np.stack([r[m].mean(0) for r in records])
        x[m] = (clip[:, None, :] * words[..., None]).astype("float32")
        x[f"{m}_lengths"] = count.astype("int32")
    return x, np.array([r["label"] for r in records], "float32")


@pytest.mark.large
@pytest.mark.parametrize("cls, name", [(MAGBERT, "tiny"), (MAGXLNet, "tiny_xlnet")])
def test_learns_the_planted_signal_of_the_aligned_sample(cls, name):
    """The sample presets on the bundled set made word-aligned, 12 epochs: measured test MAE / r MAG-BERT
    0.47 / 0.92, MAG-XLNet 0.47 / 0.94, MAG-BERT text only 1.14 / 0.53, the constant predictor 1.26."""
    preset = cls.preset("sample")

    def fit(modalities):
        keras.utils.set_random_seed(0)
        backbone, tokenizer = backbones.load_text_backbone(preset["text_backbone"])
        (x, y), (xt, yt) = (_aligned_sample(tokenizer, s) for s in ("train", "test"))
        base = cls(backbone, audio_dim=5, vision_dim=20, modalities=modalities, **preset["model"])
        model = Supervised(base)
        model.build({"token_ids": (None, 24), "audio": (None, 24, 5), "vision": (None, 24, 20)})
        model.compile(optimizers=cls.optimizers_from_settings(preset["train"]), jit_compile=True)
        batches = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(600, seed=0).batch(32)
        model.fit(batches, epochs=preset["train"]["epochs"], verbose=0)
        return float(np.abs(np.array(model.predict(xt, verbose=0)) - yt).mean()), yt, y

    mae, yt, y = fit(None)
    constant = float(np.abs(yt - np.median(y)).mean())
    assert mae < 0.6 * constant, (mae, constant)
    if cls is MAGBERT:
        text_only, _, _ = fit(["text"])
        assert mae < 0.7 * text_only, (mae, text_only)


@pytest.mark.large
def test_workflow_on_an_aligned_dataset_with_the_tiny_xlnet(tmp_path, monkeypatch):
    """`train_and_evaluate` end to end on `sample_aligned` (XLA, run directory, evaluation, SavedModel): `serve`
    takes the pipeline's per-token frames; `serve_text` tokenizes with the XLNet tokenizer and takes the dataset's
    frames per whitespace word, placing them as training does."""
    import tensorflow_text  # noqa: F401  (the tokenizer ops of the serve_text signature)

    from keras_mmsa.training import evaluate_run, train_and_evaluate
    from keras_mmsa.training.evaluation import load_run

    data_dir = tmp_path / "tfds"
    monkeypatch.setenv("KMSA_DATA_DIR", str(data_dir))
    config = RunConfig(
        method="mag_xlnet", dataset="sample_aligned", seed=1, text_backbone="tiny_xlnet",
        train={"epochs": 1, "batch_size": 8}, jit_compile=True,
    )  # fmt: skip
    result = train_and_evaluate(config, tmp_path / "runs", verbose=0)
    (run,) = (tmp_path / "runs").iterdir()
    assert evaluate_run(run, "test")["mae"] == pytest.approx(result["test"]["mae"], abs=1e-5)
    _, model, tokenizer = load_run(run)
    assert isinstance(tokenizer, backbones.XLNetTokenizer)
    batches = pipeline.load(
        "sample_aligned", "test", 4, text_backbone=tokenizer, shuffle=False, with_metadata=True
    )
    x, _, meta = next(iter(batches))
    expected = np.array(model(x, training=False))
    served = tf.saved_model.load(str(run / "export")).signatures
    np.testing.assert_allclose(served["serve"](**x)["sentiment"].numpy(), expected, atol=1e-5)
    # the same clips' stored per-word rows (the builder's examples, matched by id)
    raw = pipeline.get_builder("sample_aligned", data_dir=str(data_dir)).as_dataset(split="test")
    wanted = [i.decode() for i in meta["id"].numpy()]
    rows = {}
    for ex in raw:
        key = ex["id"].numpy().decode()
        if key in wanted:
            rows[key] = {m: ex[m].numpy() for m in ("audio", "vision")}
    request = {"text": meta["text"]}
    for m in ("audio", "vision"):
        counts = np.array([len(rows[i][m]) for i in wanted], np.int32)
        padded = np.zeros((len(wanted), counts.max(), rows[wanted[0]][m].shape[-1]), np.float32)
        for b, i in enumerate(wanted):
            padded[b, : counts[b]] = rows[i][m]
        request[m], request[f"{m}_lengths"] = tf.constant(padded), tf.constant(counts)
    from_text = served["serve_text"](**request)["sentiment"].numpy()
    np.testing.assert_allclose(from_text, expected, atol=1e-5)
