"""Methods and base models. Every method is a `MultiStageModel` (the one training engine)."""

from keras_mmsa.models.mmim import MMIM
from keras_mmsa.models.multi_stage_model import STAGE_KEY, MultiStageModel, Stage

__all__ = ["MMIM", "STAGE_KEY", "MultiStageModel", "Stage"]
