"""The training engine on a toy two-stage model: stage discipline, alternation modes, clipping, trackers, XLA,
per-sample weights, state after any stage, the schedule `fit` follows, plateau groups and LR schedules."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_mmsa.engine import MultiStageModel, Stage
from keras_mmsa.training.callbacks import PlateauMonitor


class ToyModel(MultiStageModel):
    """Encoder + head trained on MAE (stage "main"); a critic fitted to the detached features (stage "aux")."""

    def __init__(self, clipnorm=None, aux_repeats=1, schedule=None, **kwargs):
        super().__init__(**kwargs)
        self.clipnorm = clipnorm
        self.aux_repeats = aux_repeats
        self.schedule = schedule
        self.encoder = keras.layers.Dense(4, name="encoder")
        self.head = keras.layers.Dense(1, name="head")
        self.critic = keras.layers.Dense(4, name="critic")
        self.state_calls = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="calls"
        )
        self.last_batch = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="last_b"
        )
        self.aux_calls = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="aux_calls"
        )

    def stage_schedule(self):
        return self.schedule

    def build(self, input_shape=None):
        self.encoder.build((None, 3))
        self.head.build((None, 4))
        self.critic.build((None, 4))
        self.built = True

    def stages(self):
        return [
            Stage(
                "aux", ("critic",), logs=("fit",), repeats=self.aux_repeats, clipnorm=self.clipnorm
            ),
            Stage("main", ("model",), logs=("task",), clipnorm=self.clipnorm),
        ]

    def variable_groups(self):
        return {
            "critic": list(self.critic.trainable_variables),
            "model": list(self.encoder.trainable_variables) + list(self.head.trainable_variables),
        }

    def compute_features(self, x, training=False):
        return {"h": self.encoder(x["x"])}

    def call(self, x, training=False):
        return ops.squeeze(self.head(self.encoder(x["x"])), -1)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        h = features["h"]
        if stage.name == "aux":
            fit = ops.mean(ops.square(self.critic(h) - h))
            return fit, {"fit": fit}
        pred = ops.squeeze(self.head(h), -1)
        task = self.task_loss(y, pred, sample_weight)
        # the critic's output enters the main loss, so a leak of the main gradient into the critic would show
        return task + 0.1 * ops.mean(self.critic(h)), {"task": task}

    def update_state(self, stage, features, x, y, sample_weight, gather):
        if stage.name == "aux":
            self.aux_calls.assign_add(1.0)
            return
        self.state_calls.assign_add(1.0)
        self.last_batch.assign(ops.cast(ops.shape(gather(features["h"]))[0], "float32"))


def _data(n=64, stage=None, batch=16, weights=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], "float32")).astype("float32")
    inputs = {"x": x}
    if stage is not None:
        inputs["stage"] = np.full((n,), stage, "int32")
    elements = (inputs, y) if weights is None else (inputs, y, weights.astype("float32"))
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch)


def _model(**kwargs):
    keras.utils.set_random_seed(1)
    model = ToyModel(**kwargs)
    model.build()
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.1), "model": keras.optimizers.Adam(0.05)},
        jit_compile=kwargs.pop("jit", True),
    )
    return model


def _snapshot(variables):
    return [np.array(v) for v in variables]


def _changed(before, variables):
    return [not np.allclose(b, np.array(v)) for b, v in zip(before, variables)]


@pytest.mark.parametrize("jit", [True, False])
def test_stage_ids_restrict_updates_to_that_stage(jit):
    model = _model()
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.1), "model": keras.optimizers.Adam(0.05)},
        jit_compile=jit,
    )
    groups = model.variable_groups()
    critic0, main0 = _snapshot(groups["critic"]), _snapshot(groups["model"])
    model.fit(_data(stage=0), epochs=1, verbose=0)
    assert all(_changed(critic0, groups["critic"])), "stage 0 must update the critic"
    assert not any(_changed(main0, groups["model"])), "stage 0 must leave the model unchanged"
    assert float(model.state_calls) == 0.0, "stage 0 must not write the main stage's state"
    assert float(model.aux_calls) == 4.0, "state may be written after any stage (once per batch)"

    critic1, main1 = _snapshot(groups["critic"]), _snapshot(groups["model"])
    history = model.fit(_data(stage=1), epochs=1, verbose=0)
    assert not any(_changed(critic1, groups["critic"])), "stage 1 must leave the critic unchanged"
    assert all(_changed(main1, groups["model"])), "stage 1 must update the model"
    assert float(model.state_calls) == 4.0  # 64 / 16 batches
    # a loss whose stage did not run this epoch is not reported (no false 0.0)
    assert "fit" not in history.history and history.history["task"][0] > 0.0


@pytest.mark.parametrize("how", ["train_on_batch", "fit"])
def test_a_model_compiled_before_it_is_built_trains_every_group(how):
    # compile builds the groups' optimizers only when the model is built; here Keras' own first-batch build
    # must do it. On JAX an unbuilt optimizer had no slots in the step's state and its group silently did not
    # train (found in the base models' JAX benchmark rows, which compile before building).
    keras.utils.set_random_seed(1)
    model = ToyModel()
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.1), "model": keras.optimizers.Adam(0.05)},
        jit_compile=True,
    )
    model.build()
    groups = model.variable_groups()
    critic0, main0 = _snapshot(groups["critic"]), _snapshot(groups["model"])
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = x.sum(axis=1)
    if how == "train_on_batch":
        model.train_on_batch({"x": x}, y)
    else:
        model.fit({"x": x}, y, batch_size=16, epochs=1, verbose=0)
    assert all(_changed(critic0, groups["critic"])), "the critic's group must train"
    assert all(_changed(main0, groups["model"])), "the model's group must train"


def test_per_batch_mode_runs_every_stage_and_reports_every_log():
    model = _model()
    groups = model.variable_groups()
    critic0, main0 = _snapshot(groups["critic"]), _snapshot(groups["model"])
    history = model.fit(_data(), epochs=2, verbose=0)
    assert all(_changed(critic0, groups["critic"])) and all(_changed(main0, groups["model"]))
    for key in ("loss", "task", "fit", "lr_critic", "lr_model"):
        assert key in history.history, key
    assert np.isclose(history.history["lr_model"][0], 0.05)
    assert float(model.state_calls) == 8.0 and float(model.last_batch) == 16.0


def test_mixed_stage_batches_in_one_epoch_match_the_stage_passes():
    """An epoch made of a stage-0 pass then a stage-1 pass (Algorithm 1) learns: the task loss falls."""
    model = _model()
    ds = _data(stage=0).concatenate(_data(stage=1))
    history = model.fit(ds, epochs=15, verbose=0)
    losses = history.history["task"]
    assert losses[-1] < 0.5 * losses[0]


def test_batch_logs_show_a_loss_only_once_its_stage_has_run_this_epoch():
    """Per-epoch alternation: during the stage-0 pass the progress bar and TensorBoard's batch curves get no
    stage-1 losses (their empty means would read 0.0); from the stage-1 pass on they get both stages' values."""
    model = _model()
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append((batch, dict(logs)))
    )
    ds = _data(stage=0).concatenate(_data(stage=1))  # 4 stage-0 batches, then 4 stage-1 batches
    history = model.fit(ds, epochs=2, verbose=0, callbacks=[record])
    assert len(seen) == 16
    for batch, logs in seen:
        assert not any(k.startswith("_seen") for k in logs), logs
        if batch < 4:
            assert "fit" in logs and "task" not in logs and "loss" not in logs, (batch, logs)
        else:
            assert {"fit", "task", "loss"} <= set(logs) and logs["task"] > 0.0, (batch, logs)
        assert {"lr_critic", "lr_model"} <= set(logs)
    for key in ("fit", "task", "loss"):
        assert len(history.history[key]) == 2 and all(v > 0.0 for v in history.history[key]), key


def test_aux_repeats_apply_that_many_updates():
    one, three = _model(aux_repeats=1), _model(aux_repeats=3)
    three.set_weights(one.get_weights())
    for m in (one, three):
        m.fit(_data(stage=0, n=16), epochs=1, verbose=0)
    it_one = int(one.stage_optimizers["critic"].iterations)
    it_three = int(three.stage_optimizers["critic"].iterations)
    assert (it_one, it_three) == (1, 3)


def test_clipnorm_bounds_the_update():
    model = _model(clipnorm=1e-3)
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(1.0), "model": keras.optimizers.SGD(1.0)},
    )
    groups = model.variable_groups()
    before = _snapshot(groups["critic"])
    model.fit(_data(stage=0, n=16), epochs=1, verbose=0)
    delta = np.sqrt(sum(np.sum((np.array(v) - b) ** 2) for b, v in zip(before, groups["critic"])))
    assert 0 < delta <= 1e-3 + 1e-7


def test_test_step_reports_task_loss_and_predict_ignores_stage_key():
    model = _model()
    ds = _data(stage=1)
    result = model.evaluate(ds, verbose=0, return_dict=True)
    x = np.concatenate([b[0]["x"] for b in ds])
    y = np.concatenate([b[1] for b in ds])
    pred = model.predict(ds, verbose=0)
    assert pred.shape == (64,)
    assert np.isclose(result["loss"], np.mean(np.abs(pred - y)), rtol=1e-5)
    assert np.allclose(pred, np.array(model({"x": x})), atol=1e-5)


def test_compile_errors_name_the_missing_group():
    model = ToyModel()
    model.build()
    with pytest.raises(ValueError, match="critic"):
        model.compile(optimizers={"model": "adam"})
    with pytest.raises(ValueError, match="optimizers="):
        model.compile(optimizer="adam")


def test_optimizer_state_survives_save_and_load(tmp_path):
    model = _model()
    model.fit(_data(), epochs=1, verbose=0)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    other = _model()
    other.load_weights(path)
    for g in ("critic", "model"):
        a = model.stage_optimizers[g].variables
        b = other.stage_optimizers[g].variables
        assert len(a) == len(b)
        for va, vb in zip(a, b):
            np.testing.assert_allclose(np.array(va), np.array(vb))
    np.testing.assert_allclose(float(other.state_calls), float(model.state_calls))


def _count_batches():
    counter = {"n": 0}
    cb = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: counter.__setitem__("n", counter["n"] + 1)
    )
    return counter, cb


@pytest.mark.parametrize("jit", [True, False])
def test_sample_weights_reach_the_stage_losses(jit):
    """Weight-0 examples stay out of the task loss: the logged task equals the weighted MAE (no update: lr 0)."""
    model = _model()
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.0), "model": keras.optimizers.SGD(0.0)},
        jit_compile=jit,
    )
    weights = np.tile(np.array([1.0, 0.0, 0.0, 2.0]), 4)
    ds = _data(n=16, batch=16, weights=weights)
    inputs, y, _ = next(iter(ds))
    pred = np.array(model(inputs))
    expected = np.sum(weights * np.abs(pred - np.array(y))) / weights.sum()
    unweighted = np.mean(np.abs(pred - np.array(y)))
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isclose(history.history["task"][0], expected, rtol=1e-5)
    assert not np.isclose(expected, unweighted, rtol=1e-3)
    # evaluation weights the validation loss the same way; all-zero weights give 0, not NaN
    result = model.evaluate(ds, verbose=0, return_dict=True)
    assert np.isclose(result["loss"], expected, rtol=1e-5)
    zero = model.fit(_data(n=16, batch=16, weights=np.zeros(16)), epochs=1, verbose=0)
    assert zero.history["task"][0] == 0.0


@pytest.mark.parametrize("jit", [True, False])
def test_fit_on_a_plain_dataset_follows_the_per_epoch_schedule(jit):
    """stage_schedule (0.5, 1.0) on 4 batches: each epoch is 2 critic-only batches then 4 model batches."""
    model = _model(schedule=(0.5, 1.0))
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.1), "model": keras.optimizers.Adam(0.05)},
        jit_compile=jit,
    )
    counter, cb = _count_batches()
    model.fit(_data(), epochs=2, verbose=0, callbacks=[cb])
    assert counter["n"] == 2 * (2 + 4)
    assert int(model.stage_optimizers["critic"].iterations) == 2 * 2
    assert int(model.stage_optimizers["model"].iterations) == 2 * 4
    # the same model without a schedule runs both stages on every batch
    plain = _model()
    counter, cb = _count_batches()
    plain.fit(_data(), epochs=1, verbose=0, callbacks=[cb])
    assert counter["n"] == 4 and int(plain.stage_optimizers["critic"].iterations) == 4


def test_fit_refuses_inputs_it_cannot_schedule():
    model = _model(schedule=(1.0, 1.0))
    x = {"x": np.zeros((8, 3), "float32")}
    with pytest.raises(ValueError, match="per-epoch stage schedule.*tf.data.Dataset"):
        model.fit(x, np.zeros(8, "float32"), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(_data(), epochs=1, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="infinite"):
        model.fit(_data().repeat(), epochs=1, verbose=0)


def test_plateau_decays_the_declared_groups_and_rejects_unknown_ones(tmp_path):
    model = _model()
    assert model.lr_decay_groups() == ("critic", "model")
    # min_delta=inf: only the first epoch counts as an improvement -> one decay in each of the 2 later epochs
    monitor = PlateauMonitor(
        tmp_path / "best.weights.h5", lr_patience=1, lr_groups=None, min_delta=1e30
    )
    model.fit(_data(), validation_data=_data(), epochs=3, verbose=0, callbacks=[monitor])
    lr = {g: float(opt.learning_rate) for g, opt in model.stage_optimizers.items()}
    assert np.isclose(lr["critic"], 0.1 * 0.25) and np.isclose(lr["model"], 0.05 * 0.25), lr
    bad = PlateauMonitor(tmp_path / "b.weights.h5", lr_patience=1, lr_groups=("bert",))
    with pytest.raises(ValueError, match=r"lr_groups \['bert'\] have no optimizer"):
        model.fit(_data(), validation_data=_data(), epochs=1, verbose=0, callbacks=[bad])


def test_learning_rate_schedules_are_logged_and_refused_by_the_plateau_decay(tmp_path):
    model = _model()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.1), "model": keras.optimizers.SGD(schedule)}
    )
    history = model.fit(_data(), epochs=1, verbose=0)  # 4 steps: lr after 4 updates = 0.1 * 0.5**4
    assert np.isclose(history.history["lr_model"][0], 0.1 * 0.5**4)
    monitor = PlateauMonitor(tmp_path / "best.weights.h5", lr_patience=1)
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        model.fit(_data(), validation_data=_data(), epochs=1, verbose=0, callbacks=[monitor])
