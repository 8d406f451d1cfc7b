"""`LowRankFusion` against the tensor-fusion closed form, and `LMF` through the shared base-model harness."""

import keras
import numpy as np
import pytest
from harness import check_base_model, spec_batch

from keras_mmsa import backbones
from keras_mmsa.layers import LowRankFusion
from keras_mmsa.models import LMF, Supervised
from keras_mmsa.training import registry
from keras_mmsa.training.config import RunConfig


def _full_rank_factors(w):
    """Factors of rank prod(d_1+1 .. d_{M-1}+1) that write a weight tensor `w` `[d_1+1, ..., d_M+1, K]` exactly.

    Rank index r = (i_1, ..., i_{M-1}): modality m < M gets the one-hot e_{i_m} (for every output k), the last
    modality gets the slice `w[i_1, ..., i_{M-1}, :, :]`, so sum_r prod_m (W_m^(r) z_m) = w . (z_1 x ... x z_M).
    """
    *lead, last, k = w.shape
    combos = list(np.ndindex(*lead)) if lead else [()]
    factors = [np.zeros((len(combos), n, k), "float32") for n in lead]
    factors.append(np.zeros((len(combos), last, k), "float32"))
    for r, index in enumerate(combos):
        for m, i in enumerate(index):
            factors[m][r, i, :] = 1.0
        factors[-1][r] = w[index]
    return factors


@pytest.mark.parametrize("dims", [(3, 2, 4), (3, 4), (5,)])
def test_low_rank_fusion_equals_tensor_fusion_closed_form(dims):
    rng = np.random.default_rng(0)
    batch, k = 6, 2
    zs = [rng.normal(size=(batch, d)).astype("float32") for d in dims]
    w = rng.normal(size=tuple(d + 1 for d in dims) + (k,)).astype("float32")
    factors = _full_rank_factors(w)
    layer = LowRankFusion(output_dim=k, rank=factors[0].shape[0])
    layer.build([z.shape for z in zs])
    bias = np.array([0.5, -1.0], "float32")
    layer.set_weights(factors + [np.ones((1, layer.rank), "float32"), bias])
    ones = [np.concatenate([z, np.ones((batch, 1), "float32")], axis=1) for z in zs]
    letters = "ijl"[: len(dims)]
    spec = ",".join(f"b{c}" for c in letters) + f",{letters}k->bk"
    expected = np.einsum(spec, *ones, w) + bias
    np.testing.assert_allclose(np.array(layer(zs)), expected, rtol=1e-4, atol=1e-4)
    # the parts: rank products, then the fusion-weighted sum plus bias
    products = layer.rank_products(zs)
    assert tuple(products.shape) == (batch, layer.rank, k)
    np.testing.assert_allclose(np.array(layer.combine(products)), expected, rtol=1e-4, atol=1e-4)


def test_low_rank_fusion_serializes_and_weights_the_rank():
    layer = LowRankFusion(output_dim=3, rank=2)
    zs = [keras.random.normal((4, 5), seed=1), keras.random.normal((4, 2), seed=2)]
    out = np.array(layer(zs))
    clone = LowRankFusion.from_config(layer.get_config())
    clone.build([(None, 5), (None, 2)])
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.array(clone(zs)), out, atol=1e-6)
    w = np.array(layer.fusion_weights)[0]
    products = np.array(layer.rank_products(zs))
    np.testing.assert_allclose(out, np.einsum("r,brk->bk", w, products), atol=1e-5)
    with pytest.raises(ValueError, match="built for 2 inputs"):
        layer(zs[:1])


@pytest.mark.parametrize("modalities", [None, ["text", "audio"]])
def test_base_model_contract(modalities):
    keras.utils.set_random_seed(0)
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    base = LMF(
        backbone, audio_dim=5, vision_dim=20, modalities=modalities, text_hidden=8, text_out=4,
        audio_hidden=4, vision_hidden=6, rank=3,
    )  # fmt: skip
    model = check_base_model(
        base, spec_batch(tokenizer), LMF.optimizers_from_settings(LMF.preset("sample")["train"])
    )
    assert isinstance(model, Supervised) and base.fusion_dim == 3
    assert set(model.stages()[0].groups) == {"factors", "main"}
    groups = base.variable_groups()
    assert {id(v) for v in groups["factors"]} == {id(v) for v in base.fusion.trainable_variables}
    # the text backbone is part of the model but frozen
    assert base.text_encoder.backbone.weights and not base.text_encoder.trainable_weights
    # the head is a linear map of z: fusion weights . z + bias
    x, _ = spec_batch(tokenizer)
    out = base.forward(x)
    w, b = np.array(base.fusion.fusion_weights)[0], np.array(base.fusion.bias)
    np.testing.assert_allclose(
        np.array(out["prediction"]), np.array(out["z"]) @ w + b[0], atol=1e-5
    )


def test_averaged_subnet_ignores_padding_frames():
    backbone, tokenizer = backbones.load_text_backbone("tiny")
    base = LMF(backbone, audio_dim=5, modalities=["text", "audio"], text_hidden=4, text_out=2)
    x, _ = spec_batch(tokenizer, n=4)
    base.build()
    h = np.array(base.encode(x)["audio"])
    x["audio"] = x["audio"].copy()
    for i, n in enumerate(x["audio_lengths"]):
        x["audio"][i, n:] = 100.0  # garbage beyond each clip's length
    np.testing.assert_allclose(np.array(base.encode(x)["audio"]), h, atol=1e-5)


def test_registry_and_presets():
    assert registry.get_method("lmf") is LMF
    config = RunConfig(method="lmf", dataset="mosi_unaligned").resolved()
    assert config.model["rank"] == 3 and config.model["text_hidden"] == 128
    assert config.model["text_out"] == 64 and config.model["audio_hidden"] == 16
    assert config.train["lr_factors"] == 1e-3 and config.train["weight_decay"] == 5e-3
    assert config.train["patience"] == 8 and config.text_backbone == "bert_base_en_uncased"
    sims = LMF.preset("sims_unaligned")
    assert sims["train"]["lr_factors"] == 5e-4 and sims["train"]["lr_main"] == 2e-3
    sample = RunConfig(method="lmf").resolved()
    assert sample.text_backbone == "tiny"
    needed = {"batch_size", "epochs", "patience", "lr_patience", "lr_factor", "log_every"}
    assert needed | {"clipnorm", "weight_decay", "lr_main", "lr_factors"} <= set(sample.train)
    assert set(LMF.model_keys()) == set(sample.model)
