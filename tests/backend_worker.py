"""Runs one training job on whichever Keras backend the process has, for `tests/test_jax_trainer.py`.

`python tests/backend_worker.py toy INIT OUT`: the engine's toy two-stage model (`test_multi_stage_model.py`)
from the weights INIT, with clipping and repeated aux updates, one epoch of per-batch stages then one of
stage-id batches (a stage-0 pass, a stage-1 pass) with SGD; its weights go to OUT. Run on both backends from the
same INIT, the trainers must give the same weights.

`python tests/backend_worker.py packed` (JAX): `SequenceEncoder.call` (packed rows, explicit backward) equals
`reference_call` (masked Keras LSTM), values and gradients, eager and jitted, on each row budget.

`python tests/backend_worker.py supervised OUT_DIR`: the tiny `Supervised(BertLSTMMLP)` of
`test_backend_learning.py` fitted; writes `model.weights.h5` and its predictions on the synthetic set
(`predictions.npy`) for the cross-backend round trip.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402


def toy_model():
    from test_multi_stage_model import ToyModel

    model = ToyModel(clipnorm=0.05, aux_repeats=2)
    model.build()
    model.compile(
        optimizers={"critic": keras.optimizers.SGD(0.1), "model": keras.optimizers.SGD(0.05)},
        jit_compile=True,
    )
    return model


def toy(init, out):
    from test_multi_stage_model import _data

    model = toy_model()
    model.load_weights(init)
    model.fit(_data(), epochs=1, verbose=0)
    model.fit(_data(stage=0).concatenate(_data(stage=1)), epochs=1, verbose=0)
    model.save_weights(out)


def supervised(out_dir):
    from test_backend_learning import fit_supervised, train_mae

    out_dir = pathlib.Path(out_dir)
    model, x, y = fit_supervised(epochs=4)
    model.save_weights(out_dir / "model.weights.h5")
    pred = np.asarray(model.predict(x, verbose=0))
    np.save(out_dir / "predictions.npy", pred)
    print(f"{keras.backend.backend()}: MAE after 4 epochs {train_mae(model, x, y):.3f}")


def packed():
    import jax
    import jax.numpy as jnp

    from keras_mmsa.layers.sequence_encoder import SequenceEncoder

    def value_and_grads(enc, x, lengths, method, jit):
        trainable = [v.value for v in enc.trainable_variables]
        fixed = [(v, v.value) for v in enc.non_trainable_variables]

        def loss(weights, x):
            mapping = list(zip(enc.trainable_variables, weights)) + fixed
            with keras.StatelessScope(state_mapping=mapping):
                out = method(x, lengths, training=False)
            return jnp.sum(jnp.sin(out) * jnp.arange(1.0, out.shape[-1] + 1.0)), out

        f = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        (_, out), (g_w, g_x) = (jax.jit(f) if jit else f)(trainable, jnp.asarray(x))
        return [np.asarray(out), np.asarray(g_x)] + [np.asarray(g) for g in g_w]

    def check(enc, x, lengths, jit):
        got = value_and_grads(enc, x, lengths, enc.call, jit)
        want = value_and_grads(enc, x, lengths, enc.reference_call, jit)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=2e-5)

    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(3)
    enc = SequenceEncoder(6, 4, num_layers=2, bidirectional=True)
    x = rng.normal(size=(9, 14, 3)).astype("float32")
    lengths = np.array([14, 1, 5, 9, 3, 14, 2, 7, 0], "int32")
    enc(x, lengths)
    check(enc, x, lengths, jit=False)
    check(enc, x, lengths, jit=True)
    enc = SequenceEncoder(5, 3)
    x = rng.normal(size=(8, 8, 2)).astype("float32")
    enc(x, np.ones(8, "int32"))
    # ceil(3B/8) rows, B/2 rows, all B rows
    for lengths in ([2, 2, 1, 3, 1, 2, 2, 1], [8, 8, 8, 1, 2, 1, 1, 1], [8] * 8):
        check(enc, x, np.array(lengths, "int32"), jit=True)
    print("packed LSTM matches the reference on JAX")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"toy": toy, "supervised": supervised, "packed": packed}[command](*args)
