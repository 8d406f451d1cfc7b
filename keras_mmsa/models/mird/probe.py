"""How much the representations of a MIRD model share, measured by CLUB networks fitted afresh (a probe).

The estimates MIRD logs during training (`club_<condition>_<target>`) come from the CLUB networks it trains
against: they start near 0 because an untrained q(y|x) sees no dependence, rise while q learns, and then move
with both the encoders and q. They mix what the representations share with how well q has caught up. The probe
separates the two: after an epoch it takes the representations of the current weights (inference mode), fits a
new q per pair (same architecture as the model's: `CLUB(latent_dim, club_hidden, logvar_bound)`) on the
training split, and evaluates eq. 12/14's CLUB estimate on the validation split, so every epoch is measured by
an equally trained q that never saw the examples it scores. It probes all nine pairs whatever the model's
flags, so a run without CLUB (`use_club=False`) is measured the same way as one with it.

`probe_club(model, fit_batches, eval_batches)` returns `{pair: estimate}`; `CLUBProbe` is the callback that the
workflow adds when `train.club_probe` is true and logs `probe_<pair>` (TensorBoard: `epoch_probe_<pair>`) and
`probe_sum`. The probe draws nothing from Keras' global random state (its initial weights and batch order come
from its own numpy generator), so turning it on does not change the training run it watches.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
from keras import ops

from keras_mmsa.estimators import CLUB


def club_pairs_all(model):
    """The nine (fewer with fewer modalities) pairs of eq. 20, whatever `use_club`/`use_input_club`."""
    from keras_mmsa.models.mird.mird import club_pairs

    return club_pairs(model.modalities, use_input_club=True)


def representations(model, batches, max_examples=None, batch_size=256, reader=None):
    """`{("z", m) | ("x", m): array [N, d]}`: every CLUB argument of `model` over `batches` (inference mode).

    `batches`: a `tf.data.Dataset` of `(inputs, label[, weight])` or of inputs dicts; its first
    `max_examples` examples are read, re-batched by `batch_size`, through a compiled `predict` (the eager
    forward pass of MIRD's packed LSTMs is ~30x slower)."""
    import tensorflow as tf

    keys = _keys(model)
    wanted = model.input_keys()

    def select(x, *label_and_weight):
        return {k: x[k] for k in wanted}

    ds = batches.map(select).unbatch()
    if max_examples is not None:
        ds = ds.take(int(max_examples))
    ds = ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)
    reader = reader if reader is not None else representation_reader(model)
    out = reader.predict(ds, verbose=0)
    return {key: np.asarray(out[_key(key)], "float32") for key in keys}


def _keys(model):
    return sorted({key for _, cond, target in club_pairs_all(model) for key in (cond, target)})


def representation_reader(model):
    """A `keras.Model` whose `predict` gives every CLUB argument of `model` (for `representations`)."""
    return _Representations(model, _keys(model))


class _Representations(keras.Model):
    """A `keras.Model` whose `predict` returns the representations `keys` of `source`. It holds `source` by
    weak reference: a tracked one would make it a sub-layer, and the model's weights a cycle for saving."""

    def __init__(self, source, keys, **kwargs):
        super().__init__(name="club_probe_reader", **kwargs)
        self._source = weakref.ref(source)
        self.keys = list(keys)
        # no XLA (the forward pass traces in a minute, its XLA compile is slower); eager when the model is
        self.compile(jit_compile=False, run_eagerly=bool(getattr(source, "run_eagerly", False)))
        self.built = True

    def call(self, x):
        features = self._source().compute_features(x, training=False)
        return {_key(k): features[k[0]][k[1]] for k in self.keys}


class _Probe(keras.Model):
    """One CLUB network per pair, fitted jointly (their parameters are disjoint: the summed NLL's gradient
    fits each on its own)."""

    def __init__(self, pairs, dims, hidden_dim, logvar_bound, **kwargs):
        super().__init__(**kwargs)
        self.pairs = pairs
        self.clubs = {
            name: CLUB(dims[target], hidden_dim, logvar_bound=logvar_bound, name=name)
            for name, _, target in pairs
        }
        for name, cond, _ in pairs:
            self.clubs[name].build((None, dims[cond]))

    def call(self, inputs):
        return {name: inputs[_key(cond)] for name, cond, _ in self.pairs}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return sum(
            self.clubs[name].learning_loss(x[_key(cond)], x[_key(target)])
            for name, cond, target in self.pairs
        )

    def estimates(self, arrays):
        return {
            name: float(ops.convert_to_numpy(self.clubs[name](arrays[cond], arrays[target])))
            for name, cond, target in self.pairs
        }


def _key(key):
    return f"{key[0]}_{key[1]}"


def _glorot(rng, shape):
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape).astype("float32")


def probe_club(
    model,
    fit_batches,
    eval_batches,
    *,
    steps=500,
    batch_size=64,
    learning_rate=1e-3,
    max_examples=1024,
    seed=0,
    reader=None,
):
    """`{pair: CLUB estimate}`: fresh CLUB networks fitted on `fit_batches`' representations, evaluated on
    `eval_batches`' (see the module docstring).

    Args:
        model: a built `MIRD`.
        fit_batches, eval_batches: `tf.data` batches `(inputs, label)` (e.g. the training and validation split).
        steps, batch_size, learning_rate, seed: `fit_and_estimate`'s.
        max_examples: rows kept of each source.
        reader: `representation_reader(model)` to reuse (its traced `predict`); None: a new one.
    """
    reader = reader if reader is not None else representation_reader(model)
    return fit_and_estimate(
        club_pairs_all(model),
        representations(model, fit_batches, max_examples, reader=reader),
        representations(model, eval_batches, max_examples, reader=reader),
        hidden_dim=int(model.club_hidden),
        logvar_bound=model.club_logvar_bound,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )


def fit_and_estimate(
    pairs,
    fit,
    held_out,
    *,
    hidden_dim,
    logvar_bound,
    steps=500,
    batch_size=64,
    learning_rate=1e-3,
    seed=0,
):
    """Fits one new `CLUB(target dim, hidden_dim, logvar_bound)` per `(name, condition, target)` of `pairs`
    on the arrays `fit[condition]`, `fit[target]` (`steps` Adam steps of `batch_size` rows, epochs over
    fresh permutations), and returns `{name: its CLUB estimate on held_out}`.

    Everything random (initial weights: Glorot-uniform kernels, zero biases; batch order) comes from
    `numpy.random.default_rng(seed)`."""
    dims = {key: v.shape[-1] for key, v in fit.items()}
    probe = _Probe(pairs, dims, int(hidden_dim), logvar_bound, name="club_probe")
    rng = np.random.default_rng(seed)
    probe.set_weights(
        [
            _glorot(rng, w.shape) if len(w.shape) == 2 else np.zeros(w.shape, "float32")
            for w in probe.get_weights()
        ]
    )
    n = len(next(iter(fit.values())))
    batch_size = min(int(batch_size), n)
    per_epoch = n // batch_size
    epochs = -(-int(steps) // per_epoch)
    order = np.concatenate([rng.permutation(n)[: per_epoch * batch_size] for _ in range(epochs)])
    order = order[: int(steps) * batch_size]
    batches = {_key(k): np.asarray(v, "float32")[order] for k, v in fit.items()}
    optimizer = keras.optimizers.Adam(learning_rate)
    if keras.backend.backend() == "tensorflow":
        _fit_tensorflow(probe, optimizer, batches, batch_size)
    else:  # Keras' own loop: any backend (its TensorFlow trace of the nine losses is slow: ~1 min)
        probe.compile(optimizer=optimizer, jit_compile=False)
        probe.fit(batches, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    held_out = {k: np.asarray(v, "float32") for k, v in held_out.items()}
    return probe.estimates(held_out)


def _fit_tensorflow(probe, optimizer, batches, batch_size):
    """Adam over consecutive `batch_size` rows of `batches`, one graph step traced without AutoGraph (the
    step has no Python control flow; Keras' `fit` traces the same nine losses ~20x slower)."""
    import tensorflow as tf

    variables = probe.trainable_variables
    optimizer.build(variables)

    @tf.function(autograph=False, reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = probe.compute_loss(batch)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    n = len(next(iter(batches.values())))
    for start in range(0, n - batch_size + 1, batch_size):
        step({k: tf.constant(v[start : start + batch_size]) for k, v in batches.items()})


class CLUBProbe(keras.callbacks.Callback):
    """After every `every`-th epoch, logs `probe_<pair>` (`probe_club` of the current weights, fitted on
    `fit_data`, evaluated on `eval_data`) and their sum `probe_sum` into the epoch's logs.

    Place it before the TensorBoard callback so that the values are written (`epoch_probe_*` tags)."""

    def __init__(self, fit_data, eval_data, every=1, **probe_kwargs):
        super().__init__()
        self.fit_data = fit_data
        self.eval_data = eval_data
        self.every = int(every)
        self.probe_kwargs = probe_kwargs

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        if getattr(self, "_reader", None) is None:
            self._reader = representation_reader(self.model)  # traced once per run
        values = probe_club(
            self.model, self.fit_data, self.eval_data, reader=self._reader, **self.probe_kwargs
        )
        logs.update({f"probe_{name}": v for name, v in values.items()})
        logs["probe_sum"] = float(sum(values.values()))
