"""The one training engine: the method contract (`Stage`, `MultiStageModel`, keras.ops only) and one stage
trainer per backend (`tensorflow_trainer.py`, `jax_trainer.py`), chosen from the Keras backend."""

from keras_mmsa.engine.multi_stage_model import MultiStageModel, weighted_mean
from keras_mmsa.engine.stage import STAGE_KEY, Stage

__all__ = ["STAGE_KEY", "MultiStageModel", "Stage", "weighted_mean"]
