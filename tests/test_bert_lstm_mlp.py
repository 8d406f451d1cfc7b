"""`BertLSTMMLP` (MMIM's base model) through the shared base-model harness, and alone through the workflow."""

import numpy as np
import pytest
from harness import check_base_model, spec_batch, tiny_base

from keras_mmsa import backbones
from keras_mmsa.models import BertLSTMMLP, Supervised
from keras_mmsa.training import registry


@pytest.mark.parametrize("modalities", [None, ["text", "audio"], ["text"]])
def test_base_model_contract(modalities):
    base = tiny_base(modalities=modalities)
    _, tokenizer = backbones.load_text_backbone("tiny")
    model = check = check_base_model(
        base,
        spec_batch(tokenizer),
        BertLSTMMLP.optimizers_from_settings(BertLSTMMLP.preset("sample")["train"]),
    )
    assert isinstance(check, Supervised)
    assert [s.name for s in model.stages()] == ["task"]
    assert set(model.stages()[0].groups) == {"bert", "main"}
    assert model.stage_schedule() is None and set(model.lr_decay_groups()) == {"bert", "main"}


def test_registry_maps_names_to_classes_with_presets():
    assert registry.get_method("bert_lstm_mlp") is BertLSTMMLP
    preset = BertLSTMMLP.preset("mosi_unaligned")
    assert preset["train"]["lr_main"] == 1e-3 and "alpha" not in preset["model"]
    # the reference code applies encoder dropout only to stacked LSTMs: one layer -> 0.0
    assert preset["model"]["lstm_layers"] == 1 and preset["model"]["dropout_audio"] == 0.0
    with pytest.raises(
        ValueError, match="unknown method 'nope'; known methods: mmim, bert_lstm_mlp"
    ):
        registry.get_method("nope")


def test_weighted_task_loss_ignores_unlabelled_examples():
    base = tiny_base()
    model = Supervised(base)
    model.build()
    _, tokenizer = backbones.load_text_backbone("tiny")
    x, y = spec_batch(tokenizer)
    w = np.array([1, 1, 0, 0, 1, 1, 0, 0], "float32")
    features = model.compute_features(x)
    loss, _ = model.compute_stage_losses(model.stages()[0], features, x, y, sample_weight=w)
    pred = np.array(features["prediction"])
    np.testing.assert_allclose(float(loss), np.mean(np.abs(pred - y)[w > 0]), rtol=1e-5)
