"""`BertLSTMMLP`: MMIM's base model — BERT [CLS] text vector, LSTM audio/vision vectors, MLP fusion."""

from __future__ import annotations

import keras

from keras_mmsa.configs import bert_lstm_mlp as presets
from keras_mmsa.layers.feature_standardizer import (
    FeatureStandardizer,
    adapt_standardizers,
    standardized_modalities,
)
from keras_mmsa.layers.mlp_fusion import MLPFusion
from keras_mmsa.layers.sequence_encoder import SequenceEncoder
from keras_mmsa.layers.text_encoder import TextEncoder
from keras_mmsa.models.multimodal_backbone import (
    MultimodalBackbone,
)


@keras.saving.register_keras_serializable(package="keras_mmsa")
class BertLSTMMLP(MultimodalBackbone):
    """The base model of MMIM (Han et al. 2021, §3.2–3.3): h_t = BERT [CLS] of the last layer (eq. 1),
    h_a / h_v = final states of LSTM encoders over the acoustic / visual frames (eq. 2), and a fusion network F
    of stacked linear-activation layers giving Z and the sentiment score (MMIM without its MI terms).

    `encode` -> `{"text": h_t, "audio": h_a, "vision": h_v}` (the used modalities), `fuse` -> Z (`fusion_dim`),
    `head` -> y `[B]`. Variable groups: `"bert"` (the text backbone, its own learning rate) and `"main"`.

    Input standardisation (`standardize`, off by default, not in the paper): the acoustic/visual frames of the
    listed modalities pass through a `FeatureStandardizer` before their LSTM; its statistics are fitted on the
    training split by `adapt(train_dataset)` (the workflow calls it before the first epoch) and are saved with
    the weights, so evaluation and the SavedModel take raw features. Meant for raw features with mixed scales,
    such as `mosi_sdk`'s per-clip COVAREP vector (F0 in Hz next to unit-scale features).

    Args:
        text_backbone: a KerasHub backbone (e.g. from `keras_mmsa.backbones.load_text_backbone`) or a
            `TextEncoder`.
        audio_dim: feature size of the acoustic frames (None: no audio).
        vision_dim: feature size of the visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension.
        audio_hidden, vision_hidden: LSTM units of the acoustic / visual encoders.
        audio_out, vision_out: sizes of h_a, h_v.
        lstm_layers: stacked LSTM layers per encoder.
        bidirectional: bidirectional LSTM encoders.
        dropout_audio, dropout_vision: dropout of the encoders' final states (and between stacked layers).
        dropout_fusion: dropout on the fusion network's input.
        fusion_dim: size of Z.
        standardize: modalities among ("audio", "vision") whose frames are standardised (see above).
        fusion_activation: activation of the fusion network's two hidden layers (MMIM: tanh; Self-MM: relu).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    base = BertLSTMMLP(backbone, audio_dim=5, vision_dim=20)
    batch, label = next(iter(keras_mmsa.data.load("sample", "train", 8, text_backbone=tokenizer)))
    out = base.forward(batch)  # {"h": {...}, "z": [8, 128], "prediction": [8]}
    ```

    Reference:
        Han, Chen, Poria. "Improving Multimodal Fusion with Hierarchical Mutual Information Maximization for
        Multimodal Sentiment Analysis". EMNLP 2021, §3.2–3.3, eq. 1–2.
    """

    presets = presets

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        audio_hidden=32,
        vision_hidden=32,
        audio_out=16,
        vision_out=16,
        lstm_layers=1,
        bidirectional=False,
        dropout_audio=0.0,
        dropout_vision=0.0,
        dropout_fusion=0.1,
        fusion_dim=128,
        standardize=(),
        fusion_activation="tanh",
        **kwargs,
    ):
        super().__init__(**kwargs)
        modalities = self._set_modalities(modalities, audio_dim, vision_dim)
        standardize = standardized_modalities(standardize, ("audio", "vision"))
        self.audio_hidden = audio_hidden
        self.vision_hidden = vision_hidden
        self.audio_out = audio_out
        self.vision_out = vision_out
        self.lstm_layers = lstm_layers
        self.bidirectional = bidirectional
        self.dropout_audio = dropout_audio
        self.dropout_vision = dropout_vision
        self.dropout_fusion = dropout_fusion
        self.fusion_dim = fusion_dim
        self.standardize = standardize

        self.text_encoder = (
            text_backbone if isinstance(text_backbone, TextEncoder) else TextEncoder(text_backbone)
        )
        self.text_dim = self.text_encoder.backbone.hidden_dim
        self.feature_dims = {"text": self.text_dim}
        others = [m for m in ("vision", "audio") if m in modalities]
        self.encoders = {}
        for m in others:
            self.feature_dims[m] = vision_out if m == "vision" else audio_out
            self.encoders[m] = SequenceEncoder(
                vision_hidden if m == "vision" else audio_hidden,
                self.feature_dims[m],
                num_layers=lstm_layers,
                bidirectional=bidirectional,
                dropout=dropout_vision if m == "vision" else dropout_audio,
                name=f"{m}_encoder",
            )
        self.standardizers = {
            m: FeatureStandardizer(name=f"{m}_standardizer") for m in others if m in standardize
        }
        self.fusion_activation = fusion_activation
        self.fusion = MLPFusion(
            fusion_dim, dropout=dropout_fusion, activation=fusion_activation, name="fusion"
        )

    def build(self, input_shape=None):
        if self.built:
            return
        # `fuse`/`head` reach into the fusion network's parts, so build it here, under its own name scope.
        self.fusion.build([(None, self.feature_dims[m]) for m in self.modalities])
        super().build(input_shape)

    # ------------------------------------------------------------------ the contract
    def encode(self, x, training=False):
        h = {"text": self.text_encoder(x, training=training)}
        for m, enc in self.encoders.items():
            frames = x[m]
            if m in self.standardizers:
                frames = self.standardizers[m](frames, x[f"{m}_lengths"])
            h[m] = enc(frames, x[f"{m}_lengths"], training=training)
        return h

    def fuse(self, h, training=False):
        return self.fusion.fuse([h[m] for m in self.modalities], training=training)

    def head(self, z, training=False):
        return self.fusion.regress(z)

    def variable_groups(self):
        bert = list(self.text_encoder.trainable_variables)
        taken = {id(v) for v in bert}
        return {"bert": bert, "main": [v for v in self.trainable_variables if id(v) not in taken]}

    def adapt(self, dataset):
        """Fits the input standardisers (`standardize`) on batches `(inputs, label)` of the training split."""
        if not self.standardizers:
            return
        if not self.built:
            raise ValueError(f"{type(self).__name__}.adapt: build the model first")
        adapt_standardizers(self.standardizers, dataset)

    # ------------------------------------------------------------------ workflow protocol
    @classmethod
    def optimizers_from_settings(cls, train):
        """Adam for "bert" (`lr_bert`) and "main" (`lr_main`); the L2 penalty becomes decoupled weight decay."""
        wd = train["weight_decay"]
        return {
            "bert": keras.optimizers.Adam(train["lr_bert"], weight_decay=wd, name="adam_bert"),
            "main": keras.optimizers.Adam(train["lr_main"], weight_decay=wd, name="adam_main"),
        }

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_backbone": keras.saving.serialize_keras_object(self.text_encoder),
                "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim,
                "modalities": list(self.modalities),
                "audio_hidden": self.audio_hidden,
                "vision_hidden": self.vision_hidden,
                "audio_out": self.audio_out,
                "vision_out": self.vision_out,
                "lstm_layers": self.lstm_layers,
                "bidirectional": self.bidirectional,
                "dropout_audio": self.dropout_audio,
                "dropout_vision": self.dropout_vision,
                "dropout_fusion": self.dropout_fusion,
                "fusion_dim": self.fusion_dim,
                "standardize": list(self.standardize),
                "fusion_activation": self.fusion_activation,
            }
        )
        return config
