"""The one training engine: a `keras.Model` whose `train_step` runs a declared list of optimisation stages.

Every method in keras_mmsa is "a list of stages, each a loss, a group of variables and an optimizer, repeated k
times per batch" (MMIM: likelihood of q, then the main loss; MDM: the statistic network x10, then the model;
MIRD: the CLUB networks x5, then the model). Methods declare their stages and compute their losses with
`keras.ops`; this module is the only TensorFlow-specific training code (a JAX engine can be added beside it
without touching any method).

Contract for a method (a subclass):

- `stages()` -> list of `Stage`. Every stage but the last trains auxiliary estimator networks on *detached*
  features; the last stage trains the model itself.
- `variable_groups()` -> `{group_name: [variables]}`: disjoint groups of trainable variables, each with its own
  optimizer (`compile(optimizers={group_name: optimizer})`), so BERT can have its own learning rate.
- `compute_features(x, training)` -> dict of tensors: the shared forward pass (encoders).
- `compute_stage_losses(stage, features, x, y, training)` -> `(objective, logs)`: the scalar to minimise and
  a dict of named scalars to report (each must be declared in `Stage.logs`).
- `update_state(features, x, y, gather)` (optional): writes non-trainable state (history memories) after the
  last stage has been applied; `gather` all-gathers a per-replica tensor along the batch axis.
- `call(x, training)` -> predictions `[B]`; `task_loss(y, y_pred)` -> the validation loss.

Alternation. A batch whose inputs dict carries the key `"stage"` (int32 `[B]`, constant within the batch) runs
only that stage (index into `stages()`): this is how MMIM's faithful per-epoch alternation is expressed (a pass
of stage-0 batches over D_sub, then a pass of stage-1 batches over D; see `keras_mmsa.data.staging`). A batch
without it runs every stage in order, sharing one forward pass of the encoders between them.

Distribution. Under `tf.distribute.MirroredStrategy` (without XLA, which MirroredStrategy does not support
here) each stage's objective is divided by the number of replicas (Keras sums the replicas' gradients), and
`update_state` receives `gather`, an all-gather along the batch axis, so memories see the global batch.
Stage-id batches are refused there: optimizer updates cannot be synchronised inside the stage switch.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras.src.utils import tracking

STAGE_KEY = "stage"
# Prefix of the per-tracker "updated this epoch" flags that `train_step` returns and the train function strips.
_SEEN = "_seen/"


def install_xla_dropout():
    """Makes Keras' TensorFlow dropout draw its mask with the ThreeFry generator inside XLA-compiled functions.

    Keras' TF dropout calls `tf.nn.experimental.stateless_dropout`, whose random algorithm defaults to
    "auto_select"; XLA on CPU compiles that into a very slow generator (measured: 1.1 s for one [32, 50, 768]
    mask vs ~1 ms with ThreeFry; a whole tiny-backbone MMIM iteration 1.3-2.2x faster,
    `benchmarks/results/training/`). Outside XLA Keras' dropout is kept as is. Still stateless and seeded
    (same rate, different masks than Keras' default). Process-wide and idempotent; `compile(jit_compile=True)`
    installs it unless `xla_threefry_dropout=False`. Returns the dropout function it replaced (or None when
    already installed, or when this Keras has no such private hook — then nothing changes).
    """
    try:
        from keras.src.backend.tensorflow import random as tf_random
        from keras.src.random.seed_generator import draw_seed
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # a Keras without these internals: keep its dropout
        return None
    original = tf_random.dropout
    if getattr(original, "_keras_mmsa_threefry", False):
        return None

    def dropout(inputs, rate, noise_shape=None, seed=None):
        graph = tf_ops.get_default_graph()
        if rate in (0.0, 1.0) or not control_flow_util.GraphOrParentsInXlaContext(graph):
            return original(inputs, rate, noise_shape=noise_shape, seed=seed)
        seed = tf_random._cast_seed(draw_seed(seed))
        noise_shape = tf_random._get_concrete_noise_shape(inputs, noise_shape)
        keep = tf.random.stateless_uniform(noise_shape, seed=seed, alg="threefry") >= rate
        return tf.where(keep, inputs / (1.0 - rate), tf.zeros_like(inputs))

    dropout._keras_mmsa_threefry = True
    tf_random.dropout = dropout
    return original


@dataclasses.dataclass(frozen=True)
class Stage:
    """One optimisation stage of a `MultiStageModel`.

    Args:
        name: stage name (e.g. `"lld"`, `"main"`).
        groups: the variable groups this stage updates, each with its own optimizer.
        logs: names of the scalars this stage reports (one `keras.metrics.Mean` tracker each). The last stage's
            objective is always reported as `"loss"`.
        repeats: how many updates per batch (MDM's `Unroll` = 10, MIRD's T' = 5).
        clipnorm: global-norm gradient clipping over all of the stage's gradients (None: no clipping).
    """

    name: str
    groups: tuple[str, ...]
    logs: tuple[str, ...] = ()
    repeats: int = 1
    clipnorm: float | None = None


class MultiStageModel(keras.Model):
    """Base model whose `train_step` runs the stages a method declares (see the module docstring)."""

    # ------------------------------------------------------------------ to be implemented by methods
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def variable_groups(self) -> dict[str, list]:
        raise NotImplementedError

    def compute_features(self, x, training=False):
        raise NotImplementedError

    def compute_stage_losses(self, stage, features, x, y, training=False):
        raise NotImplementedError

    def update_state(self, features, x, y, gather):
        """Writes non-trainable state after the last stage; default: nothing."""

    def task_loss(self, y, y_pred):
        return keras.ops.mean(keras.ops.abs(y_pred - y))

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
                values are optimizer instances, names (`"adam"`) or serialized configs. Optimizers of groups
                that no stage updates are ignored (e.g. q's optimizer for a text-only MMIM).
            metrics: metrics over `(y, y_pred)` for `evaluate` (e.g. `keras_mmsa.metrics.MSAMetrics`).
            jit_compile: XLA-compile the train/test steps (default True).
            xla_threefry_dropout: with `jit_compile`, draw dropout masks with ThreeFry inside XLA
                (`install_xla_dropout`: Keras' default generator is very slow under XLA on CPU).
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
        if jit_compile and xla_threefry_dropout and not run_eagerly:
            install_xla_dropout()
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

    def _symbolic_build(self, *args, **kwargs):
        # Keras builds the model on the first batch here; our optimizers are built right after.
        super()._symbolic_build(*args, **kwargs)
        if getattr(self, "stage_optimizers", None):
            self.build_optimizers()

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a distribution strategy Keras would take the first distributed batch and average it across
        # replicas just to trace shapes; that fails on the bool padding mask. Methods build all their state
        # in build(), so once the model and its optimizers are built there is nothing left to trace.
        optimizers = getattr(self, "stage_optimizers", {})
        if self.built and optimizers and all(opt.built for opt in optimizers.values()):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        trackers = list(getattr(self, "_log_trackers", {}).values())
        return trackers + list(getattr(self, "_eval_metrics", []))

    @property
    def _default_save_signature(self):
        # Keras would trace `call` on float32 placeholders shaped like the `build` arguments, which is wrong
        # for a dict of int/bool/float inputs; SavedModels get explicit signatures (`training/export.py`).
        return None

    # ------------------------------------------------------------------ training
    def _replicas(self):
        return self.distribute_strategy.num_replicas_in_sync

    def _gather(self, t):
        if self._replicas() == 1:
            return t
        gathered = tf.distribute.get_replica_context().all_gather(t, axis=0)
        # all_gather loses the static trailing dimensions
        gathered.set_shape([None] + list(t.shape[1:]))
        return gathered

    @staticmethod
    def _watch(tape, variables):
        # Keras variables wrap a tf.Variable (`.value` on the TensorFlow backend).
        tape.watch([getattr(v, "value", v) for v in variables])

    def _apply(self, stage, objective, tape, variables_by_group):
        flat = [v for g in stage.groups for v in variables_by_group[g]]
        grads = tape.gradient(objective, flat)
        pairs = [(gr, v) for gr, v in zip(grads, flat) if gr is not None]
        if not pairs:
            raise ValueError(
                f"stage {stage.name!r}: no variable of groups {stage.groups} receives a gradient"
            )
        if stage.clipnorm is not None:
            clipped, _ = tf.clip_by_global_norm([gr for gr, _ in pairs], stage.clipnorm)
            pairs = list(zip(clipped, [v for _, v in pairs]))
        by_var = {id(v): gr for gr, v in pairs}
        for g in stage.groups:
            gv = [(by_var[id(v)], v) for v in variables_by_group[g] if id(v) in by_var]
            if gv:
                self.stage_optimizers[g].apply([gr for gr, _ in gv], [v for _, v in gv])

    def _check_built(self, variables_by_group):
        missing = [g for g in self._stage_groups() if not variables_by_group.get(g)]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: the variable group(s) {sorted(missing)} are empty: build the model "
                "(model.build(input_shapes)) before training it"
            )

    def _run_aux(self, stage, features, x, y, variables_by_group):
        watched = [v for g in stage.groups for v in variables_by_group[g]]
        logs = {}
        for _ in range(stage.repeats):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                self._watch(tape, watched)
                objective, logs = self.compute_stage_losses(stage, features, x, y, training=True)
                scaled = objective / self._replicas()
            self._apply(stage, scaled, tape, variables_by_group)
        return logs

    def _run_stages(self, active, x, y, variables_by_group):
        """Runs the stages with indices in `active` (python ints) on one batch; returns the logs."""
        stages = self.stages()
        last = len(stages) - 1
        logs = {}
        if last not in active:
            features = tf.nest.map_structure(
                tf.stop_gradient, self.compute_features(x, training=True)
            )
            for i in active:
                logs.update(self._run_aux(stages[i], features, x, y, variables_by_group))
            return logs
        final = stages[last]
        watched = [v for g in final.groups for v in variables_by_group[g]]
        for r in range(final.repeats):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                self._watch(tape, watched)
                features = self.compute_features(x, training=True)
                if r == 0:
                    detached = tf.nest.map_structure(tf.stop_gradient, features)
                    for i in active:
                        if i != last:
                            logs.update(
                                self._run_aux(stages[i], detached, x, y, variables_by_group)
                            )
                objective, final_logs = self.compute_stage_losses(
                    final, features, x, y, training=True
                )
                scaled = objective / self._replicas()
            self._apply(final, scaled, tape, variables_by_group)
        logs.update(final_logs)
        logs["loss"] = objective
        self.update_state(
            tf.nest.map_structure(tf.stop_gradient, features), x, y, gather=self._gather
        )
        return logs

    def train_step(self, data):
        x, y = data[0], data[1]
        stages = self.stages()
        variables_by_group = self.variable_groups()
        self._check_built(variables_by_group)
        names = list(self._log_trackers)
        if isinstance(x, dict) and STAGE_KEY in x:
            if self._replicas() > 1:
                raise ValueError(
                    "batches carrying a stage id (per-epoch alternation) cannot run under a distribution "
                    "strategy: TensorFlow cannot synchronise optimizer updates inside the stage switch. "
                    "Use per-batch alternation (e.g. MMIM(alternation='batch'), --set train.alternation=batch)."
                )
            stage_id = tf.cast(tf.reshape(x[STAGE_KEY], [-1])[0], tf.int32)
            x = {k: v for k, v in x.items() if k != STAGE_KEY}

            def branch(i):
                def fn():
                    logs = self._run_stages([i], x, y, variables_by_group)
                    values = [tf.cast(logs.get(n, 0.0), tf.float32) for n in names]
                    mask = [tf.constant(1.0 if n in logs else 0.0) for n in names]
                    return tf.stack(values), tf.stack(mask)

                return fn

            values, mask = tf.switch_case(stage_id, [branch(i) for i in range(len(stages))])
            for j, n in enumerate(names):
                self._log_trackers[n].update_state(values[j], sample_weight=mask[j])
        else:
            logs = self._run_stages(list(range(len(stages))), x, y, variables_by_group)
            for n, v in logs.items():
                self._log_trackers[n].update_state(v)
        out = {m.name: m.result() for m in self._log_trackers.values()}
        for m in self._log_trackers.values():
            out[_SEEN + m.name] = tf.cast(m.count > 0, tf.float32)
        for g, opt in self.stage_optimizers.items():
            out[f"lr_{g}"] = tf.convert_to_tensor(opt.learning_rate)
        return out

    def make_train_function(self, force=False):
        """Keras' train function, whose logs leave out the losses no batch of this epoch has computed yet.

        With per-epoch alternation the first part of an epoch runs stage 0 only; the stage-1 trackers then hold
        no value, and reporting their empty mean (0.0) would draw false zeros in the progress bar and in
        TensorBoard's batch-level curves. A loss appears once its stage has run in the epoch.
        """
        super().make_train_function(force=force)  # (Keras' TF trainer sets it and may return None)
        fn = self.train_function
        if getattr(fn, "_drops_unseen_logs", False):
            return fn

        def train_function(iterator):
            return _drop_unseen(fn(iterator))

        train_function._drops_unseen_logs = True
        self.train_function = train_function
        return train_function

    def test_step(self, data):
        x, y = data[0], data[1]
        if isinstance(x, dict) and STAGE_KEY in x:
            x = {k: v for k, v in x.items() if k != STAGE_KEY}
        y_pred = self(x, training=False)
        # weighted by the batch size, so a smaller last batch counts for what it holds (val_loss == val MAE)
        batch = tf.cast(tf.shape(y_pred)[0], tf.float32)
        self._log_trackers["loss"].update_state(self.task_loss(y, y_pred), sample_weight=batch)
        out = {"loss": self._log_trackers["loss"].result()}
        for metric in self._eval_metrics:
            metric.update_state(y, y_pred)
            res = metric.result()
            out.update(res if isinstance(res, dict) else {metric.name: res})
        return out

    def predict_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        if isinstance(x, dict) and STAGE_KEY in x:
            x = {k: v for k, v in x.items() if k != STAGE_KEY}
        return self(x, training=False)


def _drop_unseen(logs):
    """Removes the `_SEEN` flags from a train step's logs, and the losses whose flag is 0."""
    if not isinstance(logs, dict):
        return logs
    unseen = {k[len(_SEEN) :] for k, v in logs.items() if k.startswith(_SEEN) and not float(v)}
    return {k: v for k, v in logs.items() if not k.startswith(_SEEN) and k not in unseen}
