"""Chooses the stage trainer of the running Keras backend (as `keras.Model` chooses its own trainer)."""

import keras


def stage_trainer_class():
    """The mixin that runs a `MultiStageModel`'s stages on the current Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_mmsa.engine.tensorflow_trainer import TensorFlowStageTrainer

        return TensorFlowStageTrainer
    raise ImportError(
        f"keras_mmsa's training engine has no trainer for the Keras backend {backend!r} yet "
        "(TensorFlow only; a JAX trainer is planned): set KERAS_BACKEND=tensorflow"
    )
