"""Runs one training job on whichever Keras backend the process has, for `tests/test_jax_trainer.py`.

`python tests/backend_worker.py toy INIT OUT`: the engine's toy two-stage model (`test_multi_stage_model.py`)
from the weights INIT, with clipping and repeated aux updates, one epoch of per-batch stages then one of
stage-id batches (a stage-0 pass, a stage-1 pass) with SGD; its weights go to OUT. Run on both backends from the
same INIT, the trainers must give the same weights.

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


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"toy": toy, "supervised": supervised}[command](*args)
