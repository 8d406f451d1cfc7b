"""`TFN`: the Tensor Fusion Network as a base model — unimodal subnetworks, tensor fusion, post-fusion MLP."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.configs import tfn as presets
from keras_mmsa.layers.tensor_fusion import TensorFusion
from keras_mmsa.models.frozen_text_backbone import FrozenTextBackbone


@keras.saving.register_keras_serializable(package="keras_mmsa")
class TFN(FrozenTextBackbone):
    """The Tensor Fusion Network (Zadeh et al. 2017) in the form of MMSA's port, as a base model.

    - `encode`: h_t = a text LSTM (`SequenceEncoder`, final state of the valid tokens -> dropout -> Dense
      `text_out`) over the sequence output of a FROZEN KerasHub text backbone (MMSA feeds fixed BERT features;
      the backbone is part of the model, runs in inference mode and is never trained); h_a / h_v =
      `PooledSubNet`s: the mean of the valid frames -> batch norm -> dropout -> three ReLU layers of width
      `audio_hidden` / `vision_hidden`.
    - `fuse`: the tensor fusion `flatten([h_t; 1] ⊗ [h_a; 1] ⊗ [h_v; 1])` (`TensorFusion`, over the used
      modalities: text + audio gives `(text_out + 1)(audio_hidden + 1)` features, text alone `text_out + 1`),
      then the post-fusion network: dropout -> ReLU dense -> ReLU dense, both `post_fusion_dim` wide. z is the
      output of that second layer, so `fusion_dim = post_fusion_dim`: the representation that the final linear
      map reads (MDM's Z_avl, on which a method puts its critic). The flattened tensor itself
      (`fusion_tensor(h)`, `tensor_dim` features: 140,481 for MOSI's sizes) is available for inspection.
    - `head`: a linear layer to one unit, squashed by a sigmoid into `output_range` (MMSA: (-3, 3) for every
      dataset); `output_range=None` leaves it linear. y has shape `[B]`.

    One variable group, `"main"`: every trainable variable (the text backbone is frozen).

    Departures from MMSA's port, on purpose: the acoustic/visual mean runs over the valid frames (MMSA averages
    over the zero-padded length, which shrinks short clips' features); the text LSTM stops at the last real
    token (MMSA's runs over the padding); the flattened tensor's order is `[h; 1]` per modality, text first
    (the paper's; MMSA prepends the 1 and orders audio, vision, text) — a permutation of the same features.

    Args:
        text_backbone: a KerasHub backbone (e.g. from `keras_mmsa.backbones.load_text_backbone`) or a
            `TextEncoder` with `output_mode="sequence"`; it is frozen here.
        audio_dim: feature size of the acoustic frames (None: no audio).
        vision_dim: feature size of the visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension.
        text_hidden: units of the text LSTM.
        audio_hidden, vision_hidden: widths of the acoustic / visual subnetworks (sizes of h_a, h_v).
        text_out: size of h_t.
        post_fusion_dim: width of the two post-fusion layers (size of z).
        text_layers: stacked layers of the text LSTM.
        dropout_text: dropout on the text LSTM's final state (and between stacked layers).
        dropout_audio, dropout_vision: dropout after the acoustic / visual batch normalisation.
        dropout_fusion: dropout on the fusion tensor.
        output_range: `(low, high)` of the prediction (a scaled sigmoid), or None for a linear output.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    base = TFN(backbone, audio_dim=5, vision_dim=20)
    batch, label = next(iter(keras_mmsa.data.load("sample", "train", 8, text_backbone=tokenizer)))
    out = base.forward(batch)  # {"h": {...}, "z": [8, 64], "prediction": [8]}
    ```

    Reference:
        Zadeh, Chen, Poria, Cambria, Morency. "Tensor Fusion Network for Multimodal Sentiment Analysis".
        EMNLP 2017, §3 (eq. 1–2). Hyper-parameters and subnetworks as in MMSA (Yu et al.;
        `MMSA/models/singleTask/TFN.py`, `config/config_regression.json`).
    """

    presets = presets

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        text_hidden=128,
        audio_hidden=32,
        vision_hidden=128,
        text_out=32,
        post_fusion_dim=64,
        text_layers=1,
        dropout_text=0.0,
        dropout_audio=0.3,
        dropout_vision=0.3,
        dropout_fusion=0.5,
        output_range=(-3.0, 3.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        modalities = self._set_modalities(modalities, audio_dim, vision_dim)
        if output_range is not None:
            output_range = [float(v) for v in output_range]
            if len(output_range) != 2 or not output_range[0] < output_range[1]:
                raise ValueError(
                    f"output_range must be (low, high) with low < high; got {output_range}"
                )
        self.text_hidden = text_hidden
        self.audio_hidden = audio_hidden
        self.vision_hidden = vision_hidden
        self.text_out = text_out
        self.post_fusion_dim = post_fusion_dim
        self.text_layers = text_layers
        self.dropout_text = dropout_text
        self.dropout_audio = dropout_audio
        self.dropout_vision = dropout_vision
        self.dropout_fusion = dropout_fusion
        self.output_range = output_range

        self._make_unimodal_encoders(
            text_backbone,
            text_hidden=text_hidden,
            text_out=text_out,
            text_layers=text_layers,
            dropout_text=dropout_text,
            audio_hidden=audio_hidden,
            vision_hidden=vision_hidden,
            dropout_audio=dropout_audio,
            dropout_vision=dropout_vision,
        )
        self.text_dim = self.text_encoder.backbone.hidden_dim
        self.tensor_fusion = TensorFusion(name="tensor_fusion")
        self.tensor_dim = 1
        for m in modalities:
            self.tensor_dim *= self.feature_dims[m] + 1
        self.fusion_dim = post_fusion_dim
        self.fusion_dropout = keras.layers.Dropout(dropout_fusion, dtype=self.dtype_policy)
        self.post_fusion_1 = keras.layers.Dense(
            post_fusion_dim, activation="relu", dtype=self.dtype_policy, name="post_fusion_1"
        )
        self.post_fusion_2 = keras.layers.Dense(
            post_fusion_dim, activation="relu", dtype=self.dtype_policy, name="post_fusion_2"
        )
        self.output_layer = keras.layers.Dense(1, dtype=self.dtype_policy, name="output")

    # ------------------------------------------------------------------ the contract
    def fusion_tensor(self, h):
        """The flattened tensor fusion `[B, tensor_dim]` of the unimodal vectors `h` (before the MLP)."""
        return self.tensor_fusion([h[m] for m in self.modalities])

    def fuse(self, h, training=False):
        z = self.fusion_dropout(self.fusion_tensor(h), training=training)
        return self.post_fusion_2(self.post_fusion_1(z))

    def head(self, z, training=False):
        y = ops.squeeze(self.output_layer(z), axis=-1)
        if self.output_range is None:
            return y
        low, high = self.output_range
        return ops.sigmoid(y) * (high - low) + low

    # ------------------------------------------------------------------ workflow protocol
    @classmethod
    def optimizers_from_settings(cls, train):
        """One Adam for "main" (`lr_main`, decoupled `weight_decay`; MMSA's TFN: plain Adam, no decay)."""
        wd = train.get("weight_decay") or None
        return {"main": keras.optimizers.Adam(train["lr_main"], weight_decay=wd, name="adam_main")}

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_backbone": keras.saving.serialize_keras_object(self.text_encoder),
                "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim,
                "modalities": list(self.modalities),
                "text_hidden": self.text_hidden,
                "audio_hidden": self.audio_hidden,
                "vision_hidden": self.vision_hidden,
                "text_out": self.text_out,
                "post_fusion_dim": self.post_fusion_dim,
                "text_layers": self.text_layers,
                "dropout_text": self.dropout_text,
                "dropout_audio": self.dropout_audio,
                "dropout_vision": self.dropout_vision,
                "dropout_fusion": self.dropout_fusion,
                "output_range": None if self.output_range is None else list(self.output_range),
            }
        )
        return config
