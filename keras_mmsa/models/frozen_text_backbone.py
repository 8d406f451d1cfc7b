"""`FrozenTextBackbone`: the unimodal encoders that MMSA's non-BERT base models (TFN, LMF) share."""

from keras import ops

from keras_mmsa.data.spec import TEXT_FEATURES
from keras_mmsa.layers.pooled_sub_net import PooledSubNet
from keras_mmsa.layers.sequence_encoder import SequenceEncoder
from keras_mmsa.models.multimodal_backbone import MultimodalBackbone, frozen_sequence_encoder


class FrozenTextBackbone(MultimodalBackbone):
    """Base of the base models whose text is a frozen backbone's token states (MMSA's ports read BERT features
    from the pickles): those states through an LSTM text subnetwork (`SequenceEncoder`, lengths from
    `padding_mask`), and each acoustic/visual sequence through a `PooledSubNet` (masked mean of the valid
    frames, batch norm, dropout, three ReLU layers). Subclasses call `_make_unimodal_encoders` in `__init__`
    after setting `modalities`, and implement `fuse`/`head`.

    Cached text features: the frozen backbone's output depends on the token ids alone, so a training run may
    compute it once per example (`text_features(x)`, `keras_mmsa.data.attach_text_features`) and pass it as
    `x["text_features"]` (float32 [B, L_t, H]); `encode` then reads it instead of running the backbone, with
    the same result. Without the key (evaluation, the exported SavedModel) the backbone runs.
    """

    def text_features(self, x):
        """The frozen backbone's token states `[B, L_t, H]` of the text keys of `x` (inference mode)."""
        return self.text_encoder(x, training=False)

    def _make_unimodal_encoders(
        self,
        text_backbone,
        *,
        text_hidden,
        text_out,
        text_layers=1,
        dropout_text,
        audio_hidden,
        vision_hidden,
        dropout_audio,
        dropout_vision,
    ):
        self.text_encoder = frozen_sequence_encoder(text_backbone, owner=type(self).__name__)
        self.text_subnet = SequenceEncoder(
            text_hidden,
            text_out,
            num_layers=text_layers,
            dropout=dropout_text,
            name="text_subnet",
        )
        self.feature_dims = {"text": text_out}
        self.subnets = {}
        for m in ("audio", "vision"):
            if m in self.modalities:
                width = audio_hidden if m == "audio" else vision_hidden
                rate = dropout_audio if m == "audio" else dropout_vision
                self.feature_dims[m] = width
                self.subnets[m] = PooledSubNet(
                    width, dropout=rate, dtype=self.dtype_policy, name=f"{m}_subnet"
                )

    def encode(self, x, training=False):
        # The frozen backbone stands for MMSA's fixed BERT features: always in inference mode (no dropout),
        # or read from the cache the training pipeline computed with it.
        if TEXT_FEATURES in x:
            tokens = ops.cast(x[TEXT_FEATURES], self.text_encoder.compute_dtype)
        else:
            tokens = self.text_features(x)
        lengths = ops.sum(ops.cast(x["padding_mask"], "int32"), axis=1)
        h = {"text": self.text_subnet(tokens, lengths, training=training)}
        for m, net in self.subnets.items():
            h[m] = net(x[m], x[f"{m}_lengths"], training=training)
        return h
