"""Chooses the stage trainer of the running Keras backend (as `keras.Model` chooses its own trainer)."""

import keras

# Prefix of the per-tracker "updated this epoch" flags that `train_step` returns and the train function strips.
_SEEN = "_seen/"


def stage_trainer_class():
    """The mixin that runs a `MultiStageModel`'s stages on the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_mmsa.engine.tensorflow_trainer import TensorFlowStageTrainer

        return TensorFlowStageTrainer
    if backend == "jax":
        from keras_mmsa.engine.jax_trainer import JaxStageTrainer

        return JaxStageTrainer
    raise ImportError(
        f"keras_mmsa's training engine has no trainer for the Keras backend {backend!r} "
        "(tensorflow and jax): set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
    )


def _drop_unseen(logs):
    """Removes the `_SEEN` flags from a train step's logs, and the losses whose flag is 0."""
    if not isinstance(logs, dict):
        return logs
    unseen = {k[len(_SEEN) :] for k, v in logs.items() if k.startswith(_SEEN) and not float(v)}
    return {k: v for k, v in logs.items() if not k.startswith(_SEEN) and k not in unseen}
