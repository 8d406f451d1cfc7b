"""The TensorFlow stage trainer: `train_step` with one `tf.GradientTape` per stage, XLA, MirroredStrategy.

The loop of the Keras guide "Customizing what happens in fit() with TensorFlow" (two optimizers in one
`train_step`), generalised to the stages a `MultiStageModel` declares. This file and `xla_dropout.py` are the
engine's only TensorFlow-specific code.

Distribution. Under `tf.distribute.MirroredStrategy` (without XLA, which MirroredStrategy does not support
here) each stage's objective is divided by the number of replicas (Keras sums the replicas' gradients), and
`update_state` receives `gather`, an all-gather along the batch axis, so memories see the global batch.
Stage-id batches are refused there: optimizer updates cannot be synchronised inside the stage switch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mmsa.engine.stage import STAGE_KEY
from keras_mmsa.engine.trainer import _SEEN, _drop_unseen
from keras_mmsa.engine.xla_dropout import install_xla_dropout


class TensorFlowStageTrainer:
    """Mixin of `MultiStageModel` on the TensorFlow backend (placed before `keras.Model` in the bases)."""

    def _configure_backend(self, *, jit_compile, run_eagerly, xla_threefry_dropout):
        if jit_compile and xla_threefry_dropout and not run_eagerly:
            install_xla_dropout()

    # ------------------------------------------------------------------ building
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a distribution strategy Keras would take the first distributed batch and average it across
        # replicas just to trace shapes; that fails on the bool padding mask. Methods build all their state
        # in build(), so once the model and its optimizers are built there is nothing left to trace.
        optimizers = getattr(self, "stage_optimizers", {})
        if self.built and optimizers and all(opt.built for opt in optimizers.values()):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # ------------------------------------------------------------------ one batch
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

    def _run_aux(self, stage, features, x, y, sw, variables_by_group):
        watched = [v for g in stage.groups for v in variables_by_group[g]]
        logs = {}
        for _ in range(stage.repeats):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                self._watch(tape, watched)
                objective, logs = self.compute_stage_losses(
                    stage, features, x, y, sample_weight=sw, training=True
                )
                scaled = objective / self._replicas()
            self._apply(stage, scaled, tape, variables_by_group)
        self.update_state(stage, features, x, y, sw, gather=self._gather)
        return logs

    def _run_stages(self, active, x, y, sw, variables_by_group):
        """Runs the stages with indices in `active` (python ints) on one batch; returns the logs."""
        stages = self.stages()
        last = len(stages) - 1
        logs = {}
        if last not in active:
            features = tf.nest.map_structure(
                tf.stop_gradient, self.compute_features(x, training=True)
            )
            for i in active:
                logs.update(self._run_aux(stages[i], features, x, y, sw, variables_by_group))
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
                                self._run_aux(stages[i], detached, x, y, sw, variables_by_group)
                            )
                objective, final_logs = self.compute_stage_losses(
                    final, features, x, y, sample_weight=sw, training=True
                )
                scaled = objective / self._replicas()
            self._apply(final, scaled, tape, variables_by_group)
        logs.update(final_logs)
        logs["loss"] = objective
        self.update_state(
            final,
            tf.nest.map_structure(tf.stop_gradient, features),
            x,
            y,
            sw,
            gather=self._gather,
        )
        return logs

    def train_step(self, data):
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        stages = self.stages()
        variables_by_group = self.variable_groups()
        self._check_built(variables_by_group)
        names = list(self._log_trackers)
        if isinstance(x, dict) and STAGE_KEY in x:
            if self._replicas() > 1:
                raise ValueError(
                    "batches carrying a stage id (per-epoch alternation) cannot run under a distribution "
                    "strategy: TensorFlow cannot synchronise optimizer updates inside the stage switch. "
                    "Use a per-batch schedule (e.g. MMIM(alternation='batch'), "
                    "--set train.alternation=batch)."
                )
            stage_id = tf.cast(tf.reshape(x[STAGE_KEY], [-1])[0], tf.int32)
            x = {k: v for k, v in x.items() if k != STAGE_KEY}

            def branch(i):
                def fn():
                    logs = self._run_stages([i], x, y, sw, variables_by_group)
                    values = [tf.cast(logs.get(n, 0.0), tf.float32) for n in names]
                    mask = [tf.constant(1.0 if n in logs else 0.0) for n in names]
                    return tf.stack(values), tf.stack(mask)

                return fn

            values, mask = tf.switch_case(stage_id, [branch(i) for i in range(len(stages))])
            for j, n in enumerate(names):
                self._log_trackers[n].update_state(values[j], sample_weight=mask[j])
        else:
            logs = self._run_stages(list(range(len(stages))), x, y, sw, variables_by_group)
            for n, v in logs.items():
                self._log_trackers[n].update_state(v)
        out = {m.name: m.result() for m in self._log_trackers.values()}
        for m in self._log_trackers.values():
            out[_SEEN + m.name] = tf.cast(m.count > 0, tf.float32)
        for g, opt in self.stage_optimizers.items():
            # The current value, also for a LearningRateSchedule (Keras evaluates it at the iteration count).
            out[f"lr_{g}"] = tf.cast(tf.convert_to_tensor(opt.learning_rate), tf.float32)
        return out

    def test_step(self, data):
        return self.stage_test_step(data)

    def predict_step(self, data):
        return self.stage_predict_step(data)

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
