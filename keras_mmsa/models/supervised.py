"""`Supervised`: a multimodal base model trained alone on the task loss (the "base model" row of every table)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.engine import MultiStageModel, Stage, weighted_mean


@keras.saving.register_keras_serializable(package="keras_mmsa")
class Supervised(MultiStageModel):
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

    # Inputs/feature sizes of the base model (read by the workflow: export signatures, build shapes).
    @property
    def modalities(self):
        return self.backbone.modalities

    @property
    def audio_dim(self):
        return self.backbone.audio_dim

    @property
    def vision_dim(self):
        return self.backbone.vision_dim

    def input_keys(self):
        return self.backbone.input_keys()

    def build(self, input_shape=None):
        if self.built:
            return
        self.backbone.build(input_shape)
        self.built = True

    def call(self, x, training=False):
        return self.backbone(x, training=training)

    def adapt(self, dataset):
        self.backbone.adapt(dataset)

    # ------------------------------------------------------------------ engine contract
    def stages(self):
        return [Stage("task", tuple(self.backbone.variable_groups()), clipnorm=self.clipnorm)]

    def variable_groups(self):
        return self.backbone.variable_groups()

    def compute_features(self, x, training=False):
        return self.backbone.forward(x, training=training)

    def compute_stage_losses(self, stage, features, x, y, sample_weight=None, training=False):
        error = ops.abs(features["prediction"] - ops.reshape(ops.cast(y, "float32"), (-1,)))
        return weighted_mean(error, sample_weight), {}

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "clipnorm": self.clipnorm,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
