"""SelfMM / SelfMI (issue 12): label generation against MMSA's trainer, the stages, the index contract, state."""

import keras
import numpy as np
import pytest
from harness import SHAPES, spec_batch, tiny_base

from keras_mmsa import backbones
from keras_mmsa.models import SelfMI, SelfMM

N = 12
DIMS = {"fusion": 128, "text": 32, "audio": 16, "vision": 32}


def _model(cls=SelfMM, compile=True, **kwargs):
    keras.utils.set_random_seed(0)
    model = cls(tiny_base(fusion_activation="relu"), num_train_examples=N, **kwargs)
    model.build(SHAPES)
    if compile:
        model.compile(
            optimizers=cls.optimizers_from_settings(cls.preset("sample")["train"]),
            jit_compile=False,
        )
    return model


def _batch(index, seed=0):
    x, y = spec_batch(backbones.load_text_backbone("tiny")[1], n=len(index), seed=seed)
    x["index"] = np.asarray(index, "int32")
    return x, y


class MMSATrainer:
    """MMSA 2.2.1's `SELF_MM` trainer's label bookkeeping (init_labels, update_labels, update_features,
    update_centers, excludeZero=True), in numpy: the reference the method is checked against."""

    def __init__(self, n, dims, h):
        self.h = h
        self.features = {k: np.zeros((n, d)) for k, d in dims.items()}
        self.centres = {k: (np.zeros(d), np.zeros(d)) for k, d in dims.items()}
        self.labels = {k: np.zeros(n) for k in dims}

    def init_labels(self, index, y):
        for k in self.labels:
            self.labels[k][index] = y

    def step(self, epoch, index, feats):
        if epoch > 1:

            def delta(k, f):
                dp = np.linalg.norm(f - self.centres[k][0], axis=-1)
                dn = np.linalg.norm(f - self.centres[k][1], axis=-1)
                return (dn - dp) / (dp + 1e-8)

            delta_f = delta("fusion", feats["fusion"])
            y_f = self.labels["fusion"][index]
            for k in self.labels:
                if k == "fusion":
                    continue
                delta_s = delta(k, feats[k])
                new = 0.5 * delta_s / (delta_f + 1e-8) * y_f + 0.5 * (y_f + delta_s - delta_f)
                new = np.clip(new, -self.h, self.h)
                n = epoch
                self.labels[k][index] = (n - 1) / (n + 1) * self.labels[k][index] + 2 / (
                    n + 1
                ) * new
        for k in self.features:
            self.features[k][index] = feats[k]
        for k in self.features:
            pos = self.labels[k] > 0
            neg = self.labels[k] < 0
            self.centres[k] = (self.features[k][pos].mean(0), self.features[k][neg].mean(0))


def test_label_memory_follows_mmsa_trainer_over_three_epochs():
    model = _model(compile=False)
    rng = np.random.default_rng(1)
    y_all = rng.uniform(-3, 3, N).round(1).astype("float32")
    y_all[3] = 0.0  # a zero label: in neither centre (excludeZero)
    reference = MMSATrainer(N, DIMS, h=3.0)
    reference.init_labels(np.arange(N), y_all)  # MMSA initialises every label before training
    stage = model.stages()[-1]
    for epoch in (1, 2, 3):
        model.set_epoch(epoch)
        order = rng.permutation(N)
        for index in (order[:5], order[5:10], order[10:]):
            feats = {k: rng.normal(size=(len(index), d)).astype("float32") for k, d in DIMS.items()}
            features = {
                "z": feats["fusion"],
                "unimodal_features": {m: feats[m] for m in ("text", "audio", "vision")},
            }
            x = {"index": index.astype("int32")}
            model.update_state(stage, features, x, y_all[index], None, gather=lambda t: t)
            reference.step(epoch, index, {k: v.astype("float64") for k, v in feats.items()})
    memory = np.asarray(model.label_memory)
    np.testing.assert_allclose(memory[:, 0], y_all, atol=0)
    for j, m in enumerate(("text", "audio", "vision")):
        np.testing.assert_allclose(memory[:, 1 + j], reference.labels[m], rtol=1e-4, atol=1e-4)
        assert np.abs(memory[:, 1 + j] - y_all).max() > 0.1  # the labels did move off y_m
    for k in DIMS:
        np.testing.assert_allclose(
            np.asarray(model.centres[k])[0], reference.centres[k][0], atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(model.centres[k])[1], reference.centres[k][1], atol=1e-5
        )


def test_epoch_one_trains_no_subtask_and_epoch_three_does():
    model = _model()
    x, y = _batch(range(8))
    model.set_epoch(1)
    features = model.compute_features(x, training=False)
    _, logs = model.compute_stage_losses(model.stages()[-1], features, x, y)
    assert all(float(logs[f"loss_{m}"]) == 0.0 for m in ("text", "audio", "vision"))
    model.update_state(model.stages()[-1], features, x, y, None, gather=lambda t: t)
    model.set_epoch(2)
    model.update_state(model.stages()[-1], features, x, y, None, gather=lambda t: t)
    model.set_epoch(3)
    total, logs = model.compute_stage_losses(model.stages()[-1], features, x, y)
    losses = [float(logs[f"loss_{m}"]) for m in ("text", "audio", "vision")]
    assert all(v > 0 for v in losses)
    np.testing.assert_allclose(float(total), float(logs["task"]) + sum(losses), rtol=1e-5)


def test_training_batches_without_an_index_are_refused_by_name():
    model = _model()
    x, y = _batch(range(4))
    del x["index"]
    with pytest.raises(KeyError, match="'index'.*with_index=True"):
        model.train_on_batch(x, y)


def test_self_mi_stages_touch_only_their_groups_and_cpc_weight_zero_is_eq_17():
    model = _model(SelfMI)
    assert [s.name for s in model.stages()] == ["ulg", "model"]
    groups = model.variable_groups()
    assert "ulg" in groups and "ulg" not in model.stages()[-1].groups
    x, y = _batch(range(8))
    model.set_epoch(3)
    before = {g: [np.array(v) for v in vs] for g, vs in groups.items()}
    # the ulg stage alone (a stage-id batch): only G_phi and the label MLPs move
    model.train_on_batch({**x, "stage": np.zeros(8, "int32")}, y)
    for g, vs in groups.items():
        moved = any(not np.array_equal(a, np.array(v)) for a, v in zip(before[g], vs))
        assert moved == (g == "ulg"), g
    before = {g: [np.array(v) for v in vs] for g, vs in groups.items()}
    model.train_on_batch({**x, "stage": np.ones(8, "int32")}, y)
    for g, vs in groups.items():
        moved = any(not np.array_equal(a, np.array(v)) for a, v in zip(before[g], vs))
        assert moved == (g != "ulg"), g
    plain = _model(SelfMI, cpc_weight=0.0)
    plain.set_epoch(3)
    features = plain.compute_features(x)
    total, logs = plain.compute_stage_losses(plain.stages()[-1], features, x, y)
    eq17 = float(logs["task"]) + sum(float(logs[f"loss_{m}"]) for m in ("text", "audio", "vision"))
    np.testing.assert_allclose(float(total), eq17, rtol=1e-6)
    with_cpc = _model(SelfMI, cpc_weight=0.5)
    with_cpc.set_epoch(3)
    total_cpc, _ = with_cpc.compute_stage_losses(
        with_cpc.stages()[-1], with_cpc.compute_features(x), x, y
    )
    assert float(total_cpc) > float(total)  # + 0.5 * L_CPC (> 0, a cross-entropy)


def test_self_mi_generates_labels_from_its_mlp_within_the_bound():
    model = _model(SelfMI, label_momentum=False)
    x, y = _batch(range(8))
    stage = model.stages()[-1]
    features = model.compute_features(x)
    model.set_epoch(1)
    model.update_state(stage, features, x, y, None, gather=lambda t: t)
    np.testing.assert_allclose(np.asarray(model.label_memory)[:8, 1:], np.repeat(y[:, None], 3, 1))
    model.set_epoch(2)
    model.update_state(stage, features, x, y, None, gather=lambda t: t)
    feats = {"fusion": features["z"], **features["unimodal_features"]}
    expected = np.asarray(model.generate_labels(feats, y))
    np.testing.assert_allclose(np.asarray(model.label_memory)[:8, 1:], expected, rtol=1e-5)
    assert np.abs(expected).max() <= 3.0
    assert not hasattr(model, "feature_memory") or not model.feature_memory


@pytest.mark.parametrize("cls", [SelfMM, SelfMI])
def test_serialization_and_weights_round_trip_carry_the_memories(cls, tmp_path):
    model = _model(cls)
    x, y = _batch(range(8))
    for epoch in (1, 2):
        model.set_epoch(epoch)
        model.train_on_batch(x, y)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    clone.build(SHAPES)
    clone.load_weights(path)
    np.testing.assert_array_equal(np.asarray(clone.label_memory), np.asarray(model.label_memory))
    assert float(clone.epoch_counter) == 2.0
    np.testing.assert_allclose(
        np.asarray(clone.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0)), atol=1e-6
    )
    assert clone.get_config()["tasks"] == ["text", "audio", "vision"]


def test_constructor_errors_name_the_setting():
    with pytest.raises(ValueError, match="num_train_examples"):
        SelfMM(tiny_base(), num_train_examples=0)
    with pytest.raises(ValueError, match="tasks"):
        SelfMM(tiny_base(modalities=["text", "audio"]), num_train_examples=4, tasks=["vision"])
    with pytest.raises(ValueError, match="label_input"):
        SelfMI(tiny_base(), num_train_examples=4, label_input="score")
