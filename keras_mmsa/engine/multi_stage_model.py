"""The method contract of the one training engine: a `keras.Model` that declares optimisation stages.

Every method in keras_mmsa is "a list of stages, each a loss, a group of variables and an optimizer, repeated k
times per batch" (MMIM: likelihood of q, then the main loss; MDM: the statistic network x10, then the model;
MIRD: the CLUB networks x5, then the model). A method declares its stages and computes its losses with
`keras.ops` only; the loop that applies them lives in a backend trainer (`tensorflow_trainer.py`, `jax_trainer.py`; chosen by
`trainer.stage_trainer_class()` from the Keras backend, as Keras picks its own trainer), so a trainer for another
backend can be added without touching any method.

Contract for a method (a subclass):

- `stages()` -> list of `Stage`. Every stage but the last trains auxiliary estimator networks on *detached*
  features; the last stage trains the model itself.
- `variable_groups()` -> `{group_name: [variables]}`: disjoint groups of trainable variables, each with its own
  optimizer (`compile(optimizers={group_name: optimizer})`), so BERT can have its own learning rate.
- `compute_features(x, training)` -> dict of tensors: the shared forward pass (encoders).
- `compute_stage_losses(stage, features, x, y, sample_weight=None, training=False)` -> `(objective, logs)`:
  the scalar to minimise and a dict of named scalars to report (each declared in `Stage.logs`).
  `sample_weight` is the dataset's per-example weight `[B]` (None when the dataset has none): a weight of 0
  marks an example that must not enter the task loss (e.g. MIRD's unlabeled examples).
- `update_state(stage, features, x, y, sample_weight, gather)` (optional): writes non-trainable state (history
  memories, label memories) after `stage` has been applied, for any stage; `gather` all-gathers a per-replica
  tensor along the batch axis.
- `call(x, training)` -> predictions `[B]`; `task_loss(y, y_pred, sample_weight)` -> the validation loss.
- `stage_schedule()` -> None (every stage on every batch) or one pass fraction in (0, 1] per stage: each epoch
  is then a pass of stage-0 batches over that fraction of the data, a pass of stage-1 batches, ... (MMIM's
  Algorithm 1). `fit` on a plain dataset follows it (see `fit`).
- `lr_decay_groups()` -> the optimizer groups a plateau schedule (`PlateauMonitor`) decays.

Workflow protocol (class methods; `keras_mmsa.training.registry` maps `--method` names to classes):
`preset(dataset)`, `model_keys()`, `from_run_config(config, info, text_backbone)`, `optimizers_from_settings(
train)`. Multimodal base models (`keras_mmsa.models.MultimodalBackbone`) implement the same protocol and are
trained through `keras_mmsa.models.Supervised` (task loss only).

Alternation. A batch whose inputs dict carries the key `"stage"` (int32 `[B]`, constant within the batch) runs
only that stage (index into `stages()`). A batch without it runs every stage in order, sharing one forward pass
of the encoders between them.
"""

from __future__ import annotations

import keras
from keras import ops
from keras.src.utils import tracking

from keras_mmsa.engine.stage import STAGE_KEY, Stage
from keras_mmsa.engine.trainer import stage_trainer_class

__all__ = ["STAGE_KEY", "MultiStageModel", "Stage"]

StageTrainer = stage_trainer_class()


class MultiStageModel(StageTrainer, keras.Model):
    """Base class of every method: the stages it declares, run by the backend's stage trainer."""

    # ------------------------------------------------------------------ to be implemented by methods
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def variable_groups(self) -> dict[str, list]:
        raise NotImplementedError

    def compute_features(self, x, training=False):
        raise NotImplementedError

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        raise NotImplementedError

    def update_state(self, stage, features, x, y, sample_weight, gather):
        """Writes non-trainable state after `stage` has been applied; default: nothing."""

    def task_loss(self, y, y_pred, sample_weight=None):
        """Mean absolute error, weighted by `sample_weight` when given (0 where every weight is 0)."""
        return weighted_mean(
            ops.abs(ops.reshape(y_pred, (-1,)) - ops.reshape(y, (-1,))), sample_weight
        )

    def stage_schedule(self):
        """None (every stage on every batch) or one pass fraction per stage (per-epoch alternation)."""
        return None

    def lr_decay_groups(self):
        """Optimizer groups that a plateau schedule decays; default: every group a stage updates."""
        return tuple(sorted(self._stage_groups()))

    # ------------------------------------------------------------------ workflow protocol
    @classmethod
    def preset(cls, dataset):
        """`{"model": {...}, "train": {...}, "text_backbone": spec}` for a dataset (family or config name)."""
        raise NotImplementedError(f"{cls.__name__} has no presets")

    @classmethod
    def model_keys(cls):
        """Names of the model settings `from_run_config` accepts (`RunConfig.model`)."""
        return tuple(cls.preset("sample")["model"])

    @classmethod
    def from_run_config(cls, config, info, text_backbone):
        """A built model from a resolved `RunConfig`, the dataset's `DatasetInfo` and a text backbone."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a run config")

    @classmethod
    def optimizers_from_settings(cls, train):
        """`{group: optimizer}` for `compile(optimizers=...)` from train settings."""
        raise NotImplementedError(f"{cls.__name__} has no default optimizers")

    # ------------------------------------------------------------------ compile
    # Like keras.Model.compile: compile-time state (optimizers, trackers) is not layer state, so it may be
    # created after the model is built.
    @tracking.no_automatic_dependency_tracking
    def compile(
        self,
        optimizers=None,
        *,
        metrics=None,
        jit_compile=True,
        steps_per_execution=1,
        run_eagerly=False,
        xla_threefry_dropout=True,
        **kwargs,
    ):
        """Configures the per-group optimizers.

        Args:
            optimizers: `{group: optimizer}` for every group of `variable_groups()` that a stage updates;
                values are optimizer instances, names (`"adam"`) or serialized configs; learning rates may be
                `keras.optimizers.schedules.LearningRateSchedule`s. Optimizers of groups that no stage updates
                are ignored (e.g. q's optimizer for a text-only MMIM).
            metrics: metrics over `(y, y_pred)` for `evaluate` (e.g. `keras_mmsa.metrics.MSAMetrics`).
            jit_compile: XLA-compile the train/test steps (default True).
            xla_threefry_dropout: with `jit_compile` on the TensorFlow backend, draw dropout masks with
                ThreeFry inside XLA (`keras_mmsa.engine.xla_dropout`: Keras' default generator is very slow
                under XLA on CPU).
        """
        if optimizers is None:
            raise ValueError(
                f"{type(self).__name__}.compile() needs `optimizers={{group: optimizer}}`; "
                f"groups used by the stages: {sorted(self._stage_groups())}"
            )
        if kwargs.pop("optimizer", None) is not None or kwargs.pop("loss", None) is not None:
            raise ValueError(
                "A MultiStageModel takes `optimizers={group: optimizer}` and computes its own losses; "
                "do not pass `optimizer=` or `loss=`."
            )
        missing = self._stage_groups() - set(optimizers)
        if missing:
            raise ValueError(
                f"compile(optimizers=...) lacks an optimizer for the variable group(s) {sorted(missing)} "
                f"(given: {sorted(optimizers)})"
            )
        self._configure_backend(
            jit_compile=jit_compile,
            run_eagerly=run_eagerly,
            xla_threefry_dropout=xla_threefry_dropout,
        )
        super().compile(
            optimizer=None,
            loss=None,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            run_eagerly=run_eagerly,
            **kwargs,
        )
        used = self._stage_groups()
        self.stage_optimizers = {
            g: keras.optimizers.get(opt) for g, opt in sorted(optimizers.items()) if g in used
        }
        self._make_trackers()
        # Evaluation metrics over (y, y_pred), updated directly in test_step (no CompileMetrics wrapper).
        self._eval_metrics = [keras.metrics.get(m) for m in (metrics or [])]
        if self.built:
            self.build_optimizers()

    def _symbolic_build(self, *args, **kwargs):
        # Keras' fit / train_on_batch build the model here on the first batch (every backend); the groups'
        # optimizers are built right after, also for a model compiled before it was built (compile builds
        # them only when the model already is). The JAX trainer's state is read after this point: an unbuilt
        # optimizer there would have no slots and its group would silently not train.
        super()._symbolic_build(*args, **kwargs)
        if getattr(self, "stage_optimizers", None):
            self.build_optimizers()

    def _stage_groups(self):
        return {g for st in self.stages() for g in st.groups}

    def _make_trackers(self):
        names = ["loss"]
        for st in self.stages():
            for n in st.logs:
                if n == "loss":
                    raise ValueError(f"stage {st.name!r}: the log name 'loss' is reserved")
                if n in names:
                    raise ValueError(f"log name {n!r} is declared by two stages")
                names.append(n)
        self._log_trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def build_optimizers(self):
        """Creates every optimizer's slot variables for its group (before any XLA trace or checkpoint load)."""
        groups = self.variable_groups()
        for g in sorted(self._stage_groups()):
            if g not in groups:
                raise ValueError(
                    f"a stage updates the variable group {g!r}, which variable_groups() lacks: "
                    f"{sorted(groups)}"
                )
            if not self.stage_optimizers[g].built:
                self.stage_optimizers[g].build(groups[g])

    def _check_built(self, variables_by_group):
        missing = [g for g in self._stage_groups() if not variables_by_group.get(g)]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: the variable group(s) {sorted(missing)} are empty: build the model "
                "(model.build(input_shapes)) before training it"
            )

    @property
    def metrics(self):
        trackers = list(getattr(self, "_log_trackers", {}).values())
        return trackers + list(getattr(self, "_eval_metrics", []))

    @property
    def _default_save_signature(self):
        # Keras would trace `call` on float32 placeholders shaped like the `build` arguments, which is wrong
        # for a dict of int/bool/float inputs; SavedModels get explicit signatures (`training/export.py`).
        return None

    # ------------------------------------------------------------------ fit: the method's schedule
    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, following the method's `stage_schedule()` on a plain dataset.

        With a per-epoch schedule (e.g. MMIM's Algorithm 1) and a `tf.data.Dataset` of batches without stage
        ids, every epoch becomes the schedule's passes over the dataset: stage 0 on the first
        `ceil(f_0 * n_batches)` batches of one iteration, then stage 1 on `ceil(f_1 * n_batches)` batches of
        the next, ...; a dataset that reshuffles each iteration gives each pass its own order. Inputs that
        cannot be re-iterated this way (numpy arrays, generators) or an explicit `steps_per_epoch` are refused
        with a message that says how to get the schedule. Streams that carry stage ids
        (`keras_mmsa.data.epoch_stream`) and methods without a per-epoch schedule are passed to Keras as is.
        """
        from keras_mmsa.data import staging

        if not self.built:
            # Methods build every variable (and their optimizers' slots) from the padded input shapes; Keras'
            # own symbolic build cannot do that for a dict of int/bool/float inputs.
            shapes = staging.input_shapes(x)
            if shapes is not None:
                self.build(shapes)
                if getattr(self, "stage_optimizers", None):
                    self.build_optimizers()
        schedule = self.stage_schedule()
        if schedule is not None:
            x = staging.scheduled_dataset(
                x,
                schedule,
                owner=type(self).__name__,
                steps_per_epoch=kwargs.get("steps_per_epoch"),
                has_y=y is not None,
            )
        return super().fit(x, y, *args, **kwargs)

    # ------------------------------------------------------------------ evaluation / prediction
    # The backend trainers' `test_step`/`predict_step` call these (stateful keras.ops code; the JAX trainer runs
    # it inside a StatelessScope).
    def stage_test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = strip_stage(x)
        y_pred = self(x, training=False)
        # Weighted by the batch's total weight, so a smaller last batch counts for what it holds
        # (val_loss == val MAE over the labelled examples).
        if sample_weight is None:
            total = ops.cast(ops.shape(y_pred)[0], "float32")
        else:
            total = ops.sum(ops.cast(sample_weight, "float32"))
        self._log_trackers["loss"].update_state(
            self.task_loss(y, y_pred, sample_weight), sample_weight=total
        )
        out = {"loss": self._log_trackers["loss"].result()}
        for metric in self._eval_metrics:
            metric.update_state(y, y_pred)
            res = metric.result()
            out.update(res if isinstance(res, dict) else {metric.name: res})
        return out

    def stage_predict_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        return self(strip_stage(x), training=False)


def strip_stage(x):
    """The inputs dict without its stage id (other inputs are returned as they are)."""
    if isinstance(x, dict) and STAGE_KEY in x:
        return {k: v for k, v in x.items() if k != STAGE_KEY}
    return x


def weighted_mean(values, sample_weight=None):
    """Mean of `values` `[B]` weighted by `sample_weight` `[B]`; 0 when every weight is 0 (never NaN)."""
    values = ops.cast(ops.reshape(values, (-1,)), "float32")
    if sample_weight is None:
        return ops.mean(values)
    w = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
    total = ops.sum(w)
    return ops.sum(w * values) / ops.maximum(total, 1e-12) * ops.cast(total > 0, "float32")
