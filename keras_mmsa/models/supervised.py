"""`Supervised`: a multimodal base model trained alone on the task loss (the "base model" row of every table)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.engine import Stage, weighted_mean
from keras_mmsa.models.backbone_method import BackboneMethod


@keras.saving.register_keras_serializable(package="keras_mmsa")
class Supervised(BackboneMethod):
    """Trains a `MultimodalBackbone` on the task loss only: one stage updating every group of the base model.

    The task loss is the mean absolute error (the MSA convention: MMSA, MMIM, Self-MM), weighted by the
    dataset's per-example weights when it has them (a weight of 0 leaves an example out).

    Args:
        backbone: a `keras_mmsa.models.MultimodalBackbone` (e.g. `BertLSTMMLP`).
        clipnorm: global-norm gradient clipping (None: none).
        **kwargs: `keras.Model` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    model = Supervised(BertLSTMMLP(backbone, audio_dim=5, vision_dim=20))
    model.compile(optimizers=BertLSTMMLP.optimizers_from_settings(
        BertLSTMMLP.preset("sample")["train"]))
    model.fit(keras_mmsa.data.load("sample", "train", 32, text_backbone=tokenizer), epochs=1)
    ```
    """

    def __init__(self, backbone, clipnorm=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.clipnorm = clipnorm

    def build(self, input_shape=None):
        if self.built:
            return
        self.backbone.build(input_shape)
        self.built = True

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        return [Stage("task", tuple(self.backbone.variable_groups()), clipnorm=self.clipnorm)]

    def variable_groups(self):
        return self.backbone.variable_groups()

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        error = ops.abs(features["prediction"] - ops.reshape(ops.cast(y, "float32"), (-1,)))
        return weighted_mean(error, sample_weight), {}

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config["clipnorm"] = self.clipnorm
        return config
