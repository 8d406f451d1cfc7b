"""`TFN` through the shared base-model harness, `TensorFusion` against numpy, and TFN in the workflow."""

import keras
import numpy as np
import pytest
from harness import check_base_model, spec_batch

from keras_mmsa import backbones
from keras_mmsa.layers import PooledSubNet, TensorFusion
from keras_mmsa.models import TFN, Supervised
from keras_mmsa.training import RunConfig, registry

TINY = dict(text_hidden=8, audio_hidden=4, vision_hidden=6, text_out=5, post_fusion_dim=7)


def tiny_tfn(**kwargs):
    backbone = backbones.load_text_backbone("tiny")[0]
    kwargs = {"audio_dim": 5, "vision_dim": 20, **TINY, **kwargs}
    return TFN(backbone, **kwargs)


@pytest.mark.parametrize("modalities", [None, ["text", "audio"]])
def test_base_model_contract(modalities):
    keras.utils.set_random_seed(0)
    base = tiny_tfn(modalities=modalities)
    _, tokenizer = backbones.load_text_backbone("tiny")
    model = check_base_model(
        base, spec_batch(tokenizer), TFN.optimizers_from_settings(TFN.preset("sample")["train"])
    )
    assert isinstance(model, Supervised) and set(model.stages()[0].groups) == {"main"}
    # the text backbone is part of the model but frozen: no variable of it is trained
    backbone_ids = {id(v) for v in base.text_encoder.weights}
    assert backbone_ids and not backbone_ids & {id(v) for v in base.trainable_variables}
    sizes = [TINY["text_out"], TINY["audio_hidden"], TINY["vision_hidden"]][: len(base.modalities)]
    assert base.tensor_dim == int(np.prod([s + 1 for s in sizes]))
    assert base.fusion_dim == TINY["post_fusion_dim"]
    paths = [v.path for v in base.weights]
    assert len(paths) == len(set(paths))


def test_text_only_and_output_range():
    base = tiny_tfn(modalities=["text"], output_range=[-1.0, 1.0])
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, _ = spec_batch(tokenizer)
    out = base.forward({k: x[k] for k in base.input_keys()})
    assert set(out["h"]) == {"text"} and tuple(out["z"].shape) == (8, TINY["post_fusion_dim"])
    assert np.all(np.abs(np.array(out["prediction"])) < 1.0)
    assert base.fusion_tensor(out["h"]).shape == (8, TINY["text_out"] + 1)
    with pytest.raises(ValueError, match="needs 'text'"):
        tiny_tfn(modalities=["audio"])


def _numpy_tensor_fusion(vectors):
    """Row-major flattening of the outer product of the [h; 1] vectors, one example at a time."""
    out = []
    for b in range(vectors[0].shape[0]):
        t = np.ones(())
        for v in vectors:
            t = np.multiply.outer(t, np.append(v[b], 1.0))
        out.append(t.reshape(-1))
    return np.stack(out)


@pytest.mark.parametrize("dims", [(3,), (3, 2), (4, 3, 2)])
def test_tensor_fusion_matches_numpy_outer_product(dims):
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=(5, d)).astype("float32") for d in dims]
    layer = TensorFusion()
    z = np.array(layer(vectors))
    assert z.shape == (5, int(np.prod([d + 1 for d in dims])))
    assert layer.compute_output_shape([v.shape for v in vectors]) == z.shape
    np.testing.assert_allclose(z, _numpy_tensor_fusion(vectors), rtol=1e-6)
    # the appended 1 keeps the unimodal vectors: the last entry is 1, the first vector sits at stride
    if len(dims) == 3:
        a, b, c = vectors
        np.testing.assert_allclose(z[:, -1], 1.0)
        grid = z.reshape(5, *(d + 1 for d in dims))
        np.testing.assert_allclose(grid[:, :-1, -1, -1], a, rtol=1e-6)
        np.testing.assert_allclose(grid[:, :-1, :-1, -1], a[:, :, None] * b[:, None, :], rtol=1e-6)
    clone = TensorFusion.from_config(layer.get_config())
    np.testing.assert_allclose(np.array(clone(vectors)), z)


def test_pooled_subnet_averages_only_valid_frames():
    net = PooledSubNet(hidden_dim=4)
    frames = np.random.default_rng(0).normal(size=(2, 6, 3)).astype("float32")
    lengths = np.array([2, 6], "int32")
    padded = frames.copy()
    padded[0, 2:] = 100.0  # whatever sits on padding frames is ignored
    np.testing.assert_allclose(
        np.array(net(padded, lengths)), np.array(net(frames, lengths)), rtol=1e-6
    )
    clone = PooledSubNet.from_config(net.get_config())
    assert clone.hidden_dim == 4 and clone.dropout == 0.0


def test_registry_and_run_config_fill_the_mmsa_presets():
    assert registry.get_method("tfn") is TFN
    mosi = RunConfig(method="tfn", dataset="mosi_unaligned").resolved()
    assert mosi.model["text_hidden"] == 128 and mosi.model["audio_hidden"] == 32
    assert mosi.model["vision_hidden"] == 128 and mosi.model["text_out"] == 32
    assert mosi.model["post_fusion_dim"] == 64 and mosi.model["dropout_fusion"] == 0.5
    assert mosi.train["batch_size"] == 32 and mosi.train["lr_main"] == 1e-3
    assert mosi.train["patience"] == 8 and mosi.train["lr_patience"] is None
    assert (
        mosi.text_backbone == "bert_base_en_uncased" and mosi.name == "tfn_mosi_unaligned_seed1111"
    )
    mosei = RunConfig(method="tfn", dataset="mosei_aligned").resolved()
    assert (mosei.model["text_out"], mosei.model["post_fusion_dim"]) == (128, 16)
    assert (mosei.train["batch_size"], mosei.train["lr_main"]) == (128, 5e-3)
    sims = RunConfig(method="tfn", dataset="sims_unaligned").resolved()
    assert sims.text_backbone == "bert_base_zh" and sims.model["text_out"] == 256
    sample = RunConfig(method="tfn").resolved()
    assert sample.text_backbone == "tiny"
    for key in ("batch_size", "epochs", "patience", "lr_patience", "lr_factor", "log_every"):
        assert key in sample.train
    assert {"clipnorm", "weight_decay", "lr_main"} <= set(sample.train)
    with pytest.raises(ValueError, match="not tfn hyper-parameters"):
        RunConfig(method="tfn", model={"alpha": 1.0}).resolved()
