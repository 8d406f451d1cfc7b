"""The JAX stage trainer: stateless `train_step(state, data)`, one `jax.value_and_grad` per stage, `jax.jit`.

The semantics are those of `tensorflow_trainer.py` (the reference), re-expressed the way Keras' own JAX trainer
works (`keras/src/backend/jax/trainer.py`): the step is a pure function of

    state = (trainable values, non-trainable values, optimizer values, metric values)

where "optimizer values" are the variables of every group's optimizer (`self.stage_optimizers`, sorted by group)
concatenated. The method's own code (`compute_features`, `compute_stage_losses`, `update_state`, the trackers,
`opt.learning_rate`) is ordinary stateful Keras code; it runs inside a `keras.StatelessScope` that maps every
variable to its current value in the step (which is how `Layer.stateless_call` works), and the values it writes
(memories, RNG seed states, BatchNorm statistics, tracker totals) are read back from the scope. So no method
changes for this backend.

Per batch, for each stage (as the TensorFlow trainer does):

- an auxiliary stage (every stage but the last) trains its groups on *detached* features
  (`jax.lax.stop_gradient`), `repeats` times, then `update_state(stage, ...)` runs;
- the last stage differentiates its objective with respect to its groups' trainable values only (every other
  variable is a constant in that function); on its first repeat the auxiliary stages of the batch run inside
  it, on the detached features of the same forward pass, before its objective is computed (so the objective
  sees the updated auxiliary networks, as under the TensorFlow tape);
- gradients are clipped by the stage's global norm, then each group's optimizer applies its part with
  `optimizer.stateless_apply`. A variable that has no path to the objective gets no update (None, as
  `tape.gradient` returns, found by dead-code elimination of the objective's jaxpr), so optimizers with state or
  decoupled weight decay leave it alone, as on TensorFlow.

Stage-id batches (per-epoch alternation) run one stage. The stage id is read in Python from the batch (it is a
host array when the batch arrives) and selects one jitted step per set of active stages: `{0}`, `{1}`, ... and
"every stage" for batches without a stage id. That is simpler than `lax.switch` (no common output structure
and no masking of the logs of the stages that did not run, which the TensorFlow trainer needs inside its
`tf.switch_case`) and compiles no more: each branch is compiled once either way.

Costs: reading the stage id is one tiny device-to-host copy per stage-id batch, and, as on TensorFlow, the
"seen this epoch" flags of the logs are read on the host after each step (`trainer._drop_unseen`). Finding
the variables without a gradient traces each stage's objective once more (at compile time only).

Not supported here: distribution (a `keras.distribution` layout; `gather` is the identity, one device) and
gradient accumulation / EMA of the optimizers across groups (Keras' `finalize_variable_values`).
"""

from __future__ import annotations

import functools
import warnings

import jax
import keras
from keras.src import tree

from keras_mmsa.engine.stage import STAGE_KEY
from keras_mmsa.engine.trainer import _SEEN, _drop_unseen


def _identity(t):
    return t


def _detach(structure):
    return tree.map_structure(jax.lax.stop_gradient, structure)


class JaxStageTrainer:
    """Mixin of `MultiStageModel` on the JAX backend (placed before `keras.Model` in the bases)."""

    def _configure_backend(self, *, jit_compile, run_eagerly, xla_threefry_dropout):
        # JAX's dropout is already stateless and fast under XLA; the ThreeFry patch is TensorFlow-only.
        self._jax_steps = {}
        self._jax_connected = {}

    # ------------------------------------------------------------------ the state's variables
    def _jax_optimizer_variables(self):
        return [v for _, opt in sorted(self.stage_optimizers.items()) for v in opt.variables]

    def _jax_variable_lists(self):
        return (
            list(self.trainable_variables),
            list(self.non_trainable_variables),
            self._jax_optimizer_variables(),
            list(self.metrics_variables),
        )

    def _jax_all_variables(self):
        seen, out = set(), []
        for vs in self._jax_variable_lists():
            for v in vs:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    def _jx_in_scope(self, values, fn, variables=None):
        """Runs `fn()` with every variable reading its value in `values`; returns `(fn(), new values)`."""
        if variables is None:
            variables = self._jax_all_variables()
        with keras.StatelessScope(state_mapping=[(v, values[id(v)]) for v in variables]) as scope:
            result = fn()
        new = dict(values)
        for v in variables:
            current = scope.get_current_value(v)
            if current is not None:
                new[id(v)] = current
        return result, new

    # Keras' JAX trainer keeps `self.optimizer.variables` in the state; ours are the groups' optimizers.
    def _get_jax_state(
        self,
        trainable_variables=False,
        non_trainable_variables=False,
        optimizer_variables=False,
        metrics_variables=False,
        purge_model_variables=False,
    ):
        trainable, non_trainable, optimizer, metrics = self._jax_variable_lists()
        state = []
        if trainable_variables:
            state.append([v.value for v in trainable])
        if non_trainable_variables:
            state.append([v.value for v in non_trainable])
        if optimizer_variables:
            state.append([v.value for v in optimizer])
        if metrics_variables:
            state.append([v.value for v in metrics])
        if purge_model_variables:
            self._purge_model_variables(
                trainable_variables=trainable_variables,
                non_trainable_variables=non_trainable_variables,
                optimizer_variables=optimizer_variables,
                metrics_variables=metrics_variables,
            )
        return tuple(state)

    def _purge_model_variables(
        self,
        trainable_variables=False,
        non_trainable_variables=False,
        optimizer_variables=False,
        metrics_variables=False,
    ):
        trainable, non_trainable, optimizer, metrics = self._jax_variable_lists()
        for flag, vs in (
            (trainable_variables, trainable),
            (non_trainable_variables, non_trainable),
            (optimizer_variables, optimizer),
            (metrics_variables, metrics),
        ):
            if flag:
                for v in vs:
                    v._value = None

    def jax_state_sync(self):
        if not getattr(self, "_jax_state", None) or self._jax_state_synced:
            return
        lists = self._jax_variable_lists()
        keys = (
            "trainable_variables",
            "non_trainable_variables",
            "optimizer_variables",
            "metrics_variables",
        )
        for key, refs in zip(keys, lists):
            values = self._jax_state.get(key, None)
            if values:
                for ref_v, v in zip(refs, values):
                    ref_v.assign(v)
        self._jax_state_synced = True

    # ------------------------------------------------------------------ one stage
    def _jx_connected(self, key, objective_fn, wrt_values):
        """Which of `wrt_values` have a path to `objective_fn`'s output (cached per stage and context)."""
        if key not in self._jax_connected:
            try:
                from jax._src.interpreters import partial_eval as pe

                closed = jax.make_jaxpr(objective_fn)(wrt_values)
                jaxpr = pe.convert_constvars_jaxpr(closed.jaxpr)
                _, used = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
                self._jax_connected[key] = list(used[len(closed.jaxpr.constvars) :])
            except Exception:  # an internal API that moved: treat every variable as connected
                self._jax_connected[key] = [True] * len(wrt_values)
        return self._jax_connected[key]

    def _jx_differentiate(self, stage, key, fn, values):
        """`value_and_grad` of `fn(values_with_wrt) -> (objective, aux)` over the stage's trainable values."""
        groups = self.variable_groups()
        wrt = [v for g in stage.groups for v in groups[g]]

        def objective(wrt_values):
            vals = dict(values)
            vals.update({id(v): w for v, w in zip(wrt, wrt_values)})
            return fn(vals)

        wrt_values = [values[id(v)] for v in wrt]
        connected = self._jx_connected(key, lambda w: objective(w)[0], wrt_values)
        (obj, aux), grads = jax.value_and_grad(objective, has_aux=True)(wrt_values)
        grads = [g if c else None for g, c in zip(grads, connected)]
        return obj, aux, wrt, grads

    def _jx_apply(self, stage, wrt, grads, values):
        """Clips the stage's gradients and applies each group's part with its optimizer (stateless)."""
        present = [g for g in grads if g is not None]
        if not present:
            raise ValueError(
                f"stage {stage.name!r}: no variable of groups {stage.groups} receives a gradient"
            )
        if stage.clipnorm is not None:
            # tf.clip_by_global_norm: t * clip_norm / max(global_norm, clip_norm)
            norm = jax.numpy.sqrt(sum(jax.numpy.sum(jax.numpy.square(g)) for g in present))
            scale = stage.clipnorm / jax.numpy.maximum(norm, stage.clipnorm)
            grads = [None if g is None else g * scale for g in grads]
        by_var = {id(v): g for v, g in zip(wrt, grads)}
        values = dict(values)
        for group in stage.groups:
            opt = self.stage_optimizers[group]
            if not opt.built:
                # its slots are not in the state: stateless_apply would update nothing, silently
                raise ValueError(
                    f"stage {stage.name!r}: the optimizer of group {group!r} is not built; build the "
                    "model before compiling it, or train it with fit / train_on_batch, which build it"
                )
            targets = list(opt._trainable_variables)
            group_grads = [by_var.get(id(v)) for v in targets]
            if all(g is None for g in group_grads):
                continue
            with warnings.catch_warnings():
                # None marks a variable without gradient: Keras filters it out (and would warn each trace)
                warnings.filterwarnings("ignore", message="Gradients do not exist")
                new_targets, new_opt = opt.stateless_apply(
                    [values[id(v)] for v in opt.variables],
                    group_grads,
                    [values[id(v)] for v in targets],
                )
            values.update({id(v): n for v, n in zip(targets, new_targets)})
            values.update({id(v): n for v, n in zip(opt.variables, new_opt)})
        return values

    def _jx_losses(self, stage, features, x, y, sw, values):
        return self._jx_in_scope(
            values,
            lambda: self.compute_stage_losses(
                stage, features, x, y, sample_weight=sw, training=True
            ),
        )

    def _jx_run_aux(self, stage, features, x, y, sw, values):
        logs = {}
        for _ in range(stage.repeats):

            def fn(vals):
                (objective, stage_logs), vals = self._jx_losses(stage, features, x, y, sw, vals)
                return objective, (stage_logs, vals)

            _, (logs, values), wrt, grads = self._jx_differentiate(
                stage, ("aux", stage.name), fn, values
            )
            values = self._jx_apply(stage, wrt, grads, values)
        _, values = self._jx_in_scope(
            values, lambda: self.update_state(stage, features, x, y, sw, gather=_identity)
        )
        return logs, values

    def _jx_run_stages(self, active, x, y, sw, values):
        """Runs the stages with indices in `active` on one batch; returns `(logs, values)`."""
        stages = self.stages()
        last = len(stages) - 1
        logs = {}
        if last not in active:
            features, values = self._jx_in_scope(
                values, lambda: self.compute_features(x, training=True)
            )
            features = _detach(features)
            for i in active:
                stage_logs, values = self._jx_run_aux(stages[i], features, x, y, sw, values)
                logs.update(stage_logs)
            return logs, values
        final = stages[last]
        aux_indices = tuple(i for i in active if i != last)
        for r in range(final.repeats):
            with_aux = aux_indices if r == 0 else ()

            def fn(vals, with_aux=with_aux):
                features, vals = self._jx_in_scope(
                    vals, lambda: self.compute_features(x, training=True)
                )
                aux_logs = {}
                if with_aux:
                    detached = _detach(features)
                    for i in with_aux:
                        stage_logs, vals = self._jx_run_aux(stages[i], detached, x, y, sw, vals)
                        aux_logs.update(stage_logs)
                (objective, final_logs), vals = self._jx_losses(final, features, x, y, sw, vals)
                return objective, (aux_logs, final_logs, features, vals)

            objective, (aux_logs, final_logs, features, values), wrt, grads = (
                self._jx_differentiate(final, ("final", final.name, with_aux), fn, values)
            )
            logs.update(aux_logs)
            values = self._jx_apply(final, wrt, grads, values)
        logs.update(final_logs)
        logs["loss"] = objective
        detached = _detach(features)
        _, values = self._jx_in_scope(
            values, lambda: self.update_state(final, detached, x, y, sw, gather=_identity)
        )
        return logs, values

    # ------------------------------------------------------------------ one batch
    def _jx_split_stage(self, data):
        """`(active stage indices, data without the stage id)`; the stage id must be a concrete array."""
        x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
        n = len(self.stages())
        if not (isinstance(x, dict) and STAGE_KEY in x):
            return tuple(range(n)), (x, y, sw)
        stage_id = x[STAGE_KEY]
        if isinstance(stage_id, jax.core.Tracer):
            raise ValueError(
                "the JAX stage trainer reads a batch's stage id in Python to pick that stage's jitted step; "
                "call train_step outside jax.jit (model.fit and train_on_batch do)"
            )
        stage_id = int(keras.ops.convert_to_numpy(stage_id).reshape(-1)[0])
        if not 0 <= stage_id < n:
            raise ValueError(f"batch stage id {stage_id} is not a stage index (0..{n - 1})")
        x = {k: v for k, v in x.items() if k != STAGE_KEY}
        return (stage_id,), (x, y, sw)

    def _train_step_for(self, active, state, data):
        x, y, sw = data
        lists = self._jax_variable_lists()
        self._check_built(self.variable_groups())
        values = {}
        for refs, vals in zip(lists, state):
            values.update({id(v): val for v, val in zip(refs, vals)})
        logs, values = self._jx_run_stages(list(active), x, y, sw, values)

        def report():
            for n, v in logs.items():
                self._log_trackers[n].update_state(v)
            out = {m.name: m.result() for m in self._log_trackers.values()}
            for m in self._log_trackers.values():
                out[_SEEN + m.name] = keras.ops.cast(m.count > 0, "float32")
            for g, opt in self.stage_optimizers.items():
                out[f"lr_{g}"] = keras.ops.cast(opt.learning_rate, "float32")
            return out

        out, values = self._jx_in_scope(values, report)
        new_state = tuple([values[id(v)] for v in refs] for refs in lists)
        return out, new_state

    def train_step(self, state, data):
        active, data = self._jx_split_stage(data)
        return self._train_step_for(active, state, data)

    def _jx_step_for(self, active):
        """The (jitted, unless run_eagerly or jit_compile=False) step of one set of active stages."""
        if active not in self._jax_steps:
            step = functools.partial(self._train_step_for, active)
            if not self.run_eagerly and self.jit_compile:
                step = jax.jit(step, donate_argnums=0)
            self._jax_steps[active] = step
        return self._jax_steps[active]

    def make_train_function(self, force=False):
        """Keras' train function with the stage dispatch in Python, whose logs leave out unseen losses.

        As on TensorFlow (`tensorflow_trainer.TensorFlowStageTrainer.make_train_function`): a loss appears in the
        batch logs once its stage has run in the epoch.
        """
        if self.train_function is not None and not force:
            return self.train_function
        if force or not hasattr(self, "_jax_steps"):
            self._jax_steps = {}

        def one(state, data):
            active, data = self._jx_split_stage(data)
            return self._jx_step_for(active)(state, data)

        def train_function(state, iterator):
            logs, state = one(state, next(iterator))
            for _ in range(self.steps_per_execution - 1):
                try:
                    data = next(iterator)
                except StopIteration:
                    break
                logs, state = one(state, data)
            return _drop_unseen(logs), state

        self.train_function = train_function
        return train_function

    # ------------------------------------------------------------------ evaluation / prediction
    def test_step(self, state, data):
        refs = (
            list(self.trainable_variables),
            list(self.non_trainable_variables),
            list(self.metrics_variables),
        )
        values = {}
        for rs, vals in zip(refs, state):
            values.update({id(v): val for v, val in zip(rs, vals)})
        logs, values = self._jx_in_scope(
            values, lambda: self.stage_test_step(data), variables=[v for rs in refs for v in rs]
        )
        return logs, tuple([values[id(v)] for v in rs] for rs in refs)

    def predict_step(self, state, data):
        trainable, non_trainable = state
        x = data[0] if isinstance(data, (tuple, list)) else data
        if isinstance(x, dict) and STAGE_KEY in x:
            x = {k: v for k, v in x.items() if k != STAGE_KEY}
        outputs, non_trainable = self.stateless_call(trainable, non_trainable, x, training=False)
        return outputs, non_trainable
