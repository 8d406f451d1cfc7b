"""`AlignedTextBackbone`: base of the word-aligned base models over a frozen text backbone (EF-LSTM, MFN)."""

import keras
from keras import ops

from keras_mmsa.data.spec import TEXT_FEATURES
from keras_mmsa.models.frozen_text_backbone import FrozenTextBackbone
from keras_mmsa.models.multimodal_backbone import check_aligned_frames, frozen_sequence_encoder


class AlignedTextBackbone(FrozenTextBackbone):
    """Base of the base models that read the three modalities token by token: the frozen text backbone's
    token states `[B, L, H]` and word-aligned audio/vision `[B, L, D]` (frame t belongs to token t, the layout
    of MMSA's aligned pickles; `requires_aligned = True`).

    Every sequence is read over the first `sum(padding_mask)` positions ([CLS], the words, [SEP]); what sits
    on the padding positions is ignored (`audio_lengths`/`vision_lengths` equal that count by the aligned
    contract and are not read). A static length of `audio`/`vision` other than `token_ids`' is an error.

    The fusion is sequence-level: z is computed from the token sequences, not from the unimodal vectors h, so
    `forward(x)` computes h, z and the prediction in one pass and `fuse(h)` raises; methods use `forward`.
    Subclasses call `_make_text_encoder` in `__init__` after setting `modalities`, and implement `forward`
    (from `aligned_inputs`), `head`, `get_config`. Optimizers: one Adam for the one group "main".
    """

    requires_aligned = True

    def _make_text_encoder(self, text_backbone):
        self.text_encoder = frozen_sequence_encoder(text_backbone, owner=type(self).__name__)
        self.text_dim = self.text_encoder.backbone.hidden_dim

    def _token_states(self, x):
        """The frozen backbone's last-layer token states `[B, L, H]` (MMSA's fixed BERT features): always in
        inference mode, never trained. The one place the text backbone runs; a training run's cached features
        (`x["text_features"]`, see `FrozenTextBackbone`) replace it."""
        if TEXT_FEATURES in x:
            return ops.cast(x[TEXT_FEATURES], self.text_encoder.compute_dtype)
        return self.text_features(x)

    def input_dims(self):
        """`{modality: per-token feature size}` of the used modalities (text: the backbone's hidden size)."""
        dims = {"text": self.text_dim, "audio": self.audio_dim, "vision": self.vision_dim}
        return {m: dims[m] for m in self.modalities}

    def aligned_inputs(self, x):
        """`(sequences, mask)`: `{modality: [B, L, D_m]}` (text: the token states) and the bool mask
        `[B, L]` of the positions read (`padding_mask`: a prefix of each row)."""
        length = x["token_ids"].shape[1]
        for m, dim in self.input_dims().items():
            if m == "text":
                continue
            check_aligned_frames(type(self).__name__, x, m, dim, length)
        sequences = {"text": self._token_states(x)}
        for m in self.modalities:
            if m != "text":
                sequences[m] = ops.convert_to_tensor(x[m], dtype=self.compute_dtype)
        return sequences, ops.cast(x["padding_mask"], "bool")

    def dummy_inputs(self, input_shape=None, batch=2):
        """A zero batch whose audio/vision have one frame per token (unless `input_shape` says otherwise, which
        `aligned_inputs` then refuses)."""
        shapes = dict(input_shape or {})
        length = (shapes.get("token_ids") or (None, 8))[1] or 8
        shapes["token_ids"] = (None, length)
        for m, dim in (("audio", self.audio_dim), ("vision", self.vision_dim)):
            steps = (shapes.get(m) or (None, None))[1]
            shapes[m] = (None, steps or length, dim)
        return super().dummy_inputs(shapes, batch)

    def encode(self, x, training=False):
        return self.forward(x, training=training)["h"]

    def fuse(self, h, training=False):
        raise NotImplementedError(
            f"{type(self).__name__} fuses the token sequences, not the unimodal vectors h: z is not a "
            "function of h. Use forward(x), which returns h, z and the prediction."
        )

    def call(self, x, training=False):
        return self.forward(x, training=training)["prediction"]

    @classmethod
    def optimizers_from_settings(cls, train):
        """One Adam for "main" at `lr_main`; MMSA's L2 penalty (`weight_decay`) becomes decoupled weight decay."""
        wd = train.get("weight_decay") or None
        return {"main": keras.optimizers.Adam(train["lr_main"], weight_decay=wd, name="adam_main")}


def masked_mean(sequence, mask):
    """The mean over the positions where `mask` `[B, L]` is True of `sequence` `[B, L, D]` (at least one)."""
    weights = ops.cast(mask, sequence.dtype)[..., None]
    count = ops.maximum(ops.sum(weights, axis=1), 1.0)
    return ops.sum(sequence * weights, axis=1) / count
