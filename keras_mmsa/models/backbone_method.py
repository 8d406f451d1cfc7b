"""`BackboneMethod`: what every method over a multimodal base model shares (inputs, forward, adapt)."""

import keras

from keras_mmsa.engine import MultiStageModel


class BackboneMethod(MultiStageModel):
    """A method over a `MultimodalBackbone` held as `self.backbone`: the base model's inputs and feature sizes
    (read by the workflow: export signatures, build shapes), its forward pass as the shared features of the
    stages, its prediction as `call`, its data-dependent state (`adapt`), and the (de)serialization of the base
    model it holds (`get_config` / `from_config`; subclasses add their own settings to the config)."""

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

    def compute_features(self, x, training=False):
        return self.backbone.forward(x, training=training)

    def call(self, x, training=False):
        return self.backbone(x, training=training)

    def adapt(self, dataset):
        """Fits the base model's data-dependent state (e.g. `BertLSTMMLP(standardize=...)`) on training batches."""
        self.backbone.adapt(dataset)

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
