"""`TextEncoder`: a KerasHub text backbone reduced to one vector per sentence."""

import keras

from keras_mmsa.data.spec import TEXT_KEYS

OUTPUT_MODES = ("cls", "pooled", "sequence")


@keras.saving.register_keras_serializable(package="keras_mmsa")
class TextEncoder(keras.layers.Layer):
    """Encode the text keys of the keras_mmsa inputs dict with a KerasHub backbone.

    The default returns the last layer's hidden state at the first position ([CLS] in BERT's layout), the "head
    embedding from the last layer's output" that MMIM uses as h_t. The backbone is called with the subset of
    `token_ids`, `padding_mask`, `segment_ids` that it declares as inputs (BERT takes all three; DistilBERT and
    RoBERTa-style backbones take no segment ids), so extra keys of the inputs dict (audio, vision) are ignored.

    Freezing: `encoder.trainable = False` freezes every backbone weight (Keras propagates `trainable` to nested
    layers); dropout still follows the `training` flag. Unless `output_mode="pooled"`, BERT's pooler is unused
    and is kept non-trainable (in the shared backbone object too), so optimizers see no gradient-less weights.

    Args:
        backbone: a `keras_hub.models.Backbone` (e.g. from `keras_mmsa.backbones.load_text_backbone`) whose
            inputs are named like the keras_mmsa text keys and whose output is a tensor [B, L, H] or a dict with
            `"sequence_output"` (and `"pooled_output"`).
        output_mode: `"cls"` (default): the last layer's vector at position 0, [B, H]. `"pooled"`: BERT's pooler
            (tanh dense over [CLS]), [B, H]. `"sequence"`: the whole last layer, [B, L, H].
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, `trainable`).

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    encoder = TextEncoder(backbone)  # from keras_mmsa.layers.text_encoder import TextEncoder
    batch, label = next(iter(keras_mmsa.data.load("sample", "train", 8)))
    h_t = encoder(batch)  # [8, 64]
    ```

    Reference:
        Han, Chen, Poria. "Improving Multimodal Fusion with Hierarchical Mutual Information Maximization for
        Multimodal Sentiment Analysis", EMNLP 2021, §3.3, eq. (1): h_t = BERT(X_t; θ_t^BERT).
    """

    def __init__(self, backbone, output_mode="cls", **kwargs):
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}; got {output_mode!r}")
        super().__init__(**kwargs)
        self.backbone = backbone
        self.output_mode = output_mode
        declared = backbone.input if isinstance(backbone.input, dict) else {}
        self._input_keys = tuple(key for key in TEXT_KEYS if key in declared) or ("token_ids",)
        if output_mode == "pooled" and not self._has_pooled_output():
            raise ValueError(
                f"output_mode='pooled' needs a backbone with a 'pooled_output' (BERT); "
                f"{type(backbone).__name__} has none. Use 'cls' or 'sequence'."
            )
        self._freeze_unused_pooler()

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, value)
        self._freeze_unused_pooler()

    def _freeze_unused_pooler(self):
        # BERT's pooler (dense + tanh over [CLS]) gets no gradient unless output_mode="pooled"; leaving it
        # trainable would only make every optimizer step warn about missing gradients.
        backbone = getattr(self, "backbone", None)
        if backbone is None or getattr(self, "output_mode", None) == "pooled":
            return
        for layer in backbone.layers:
            if layer.name == "pooled_dense":
                layer.trainable = False

    def _has_pooled_output(self):
        return isinstance(self.backbone.output, dict) and "pooled_output" in self.backbone.output

    def call(self, inputs, training=None):
        missing = [key for key in self._input_keys if key not in inputs]
        if missing:
            raise KeyError(
                f"TextEncoder needs the text keys {list(self._input_keys)} of the inputs dict; missing "
                f"{missing} (got {sorted(inputs)}). Load the data with the 'text' modality."
            )
        features = {key: inputs[key] for key in self._input_keys}
        if "padding_mask" in features:
            features["padding_mask"] = keras.ops.cast(features["padding_mask"], "int32")
        outputs = self.backbone(features, training=training)
        if self.output_mode == "pooled":
            return outputs["pooled_output"]
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        if self.output_mode == "sequence":
            return sequence
        return sequence[:, 0, :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "output_mode": self.output_mode,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
