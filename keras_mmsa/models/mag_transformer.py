"""`MAGTransformer`: what MAG-BERT and MAG-XLNet share — a fine-tuned KerasHub transformer split around a
Multimodal Adaptation Gate."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.layers.multimodal_adaptation_gate import MultimodalAdaptationGate
from keras_mmsa.layers.split_text_backbone import SplitTextBackbone
from keras_mmsa.models.multimodal_backbone import (
    MultimodalBackbone,
    check_aligned_frames,
)


class MAGTransformer(MultimodalBackbone):
    """Base of MAG-BERT and MAG-XLNet (Rahman et al. 2020): a pre-trained transformer, fine-tuned, whose token
    states after layer `injection_index - 1` (0: the embeddings) are shifted by a `MultimodalAdaptationGate` from
    the word-aligned audio/vision frames before the remaining layers run; the sentence summary then goes through
    dropout and a linear regression layer.

    The backbone is a KerasHub `BertBackbone` / `XLNetBackbone` run by `SplitTextBackbone` (its own sublayers and
    weights, not a re-implementation). Inputs are word-aligned (`requires_aligned`): `audio` `[B, L, D_a]` and
    `vision` `[B, L, D_v]` with L the length of `token_ids`, frame t belonging to token t (zeros on special
    tokens and padding).

    The contract: the fusion happens inside the transformer, on token sequences, so z is not a function of
    unimodal vectors and `forward(x)` computes everything in one pass (`fuse(h)` raises; methods use `forward`):
    - h (`encode`): masked means over the real tokens (`padding_mask`) of each modality's per-token input to the
      gate: text, the token states entering MAG (`hidden_dim`); audio / vision, the aligned frames (`audio_dim`,
      `vision_dim`). They are read-outs for methods that need unimodal vectors; the prediction does not use them.
    - z (`fusion_dim = hidden_dim`): the sentence summary after the fused layers (subclasses: BERT's pooler over
      [CLS], XLNet's summary of its last real token): the "[CLS] representation of the last layer" that MDM
      takes as Z.
    - y (`head`): `Dense(1)(dropout(z))`, a linear map of z (MDM's A_θp).

    Modalities: text plus any of audio/vision (the gate takes the ones selected); text alone gives the plain
    fine-tuned transformer (no gate), the text-only ablation.

    Variable groups: `text_group` (the whole backbone, fine-tuned) and `"main"` (gate, summary, head), each with
    its own learning rate (`lr_<text_group>`, `lr_main`) and weight decay `weight_decay` (biases and
    layer-norm scales/offsets are never decayed, the BERT fine-tuning convention the reference code follows).
    """

    requires_aligned = True
    # `injection_index=None` takes the subclass's paper default.
    default_injection_index = 0
    # The optimizer group of the backbone's weights (its learning rate is train["lr_<text_group>"]).
    text_group = "text"

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        injection_index=None,
        beta_shift=1.0,
        dropout_mag=0.5,
        dropout_head=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        modalities = self._set_modalities(modalities, audio_dim, vision_dim)
        self._check_backbone(text_backbone)
        if injection_index is None:  # the subclass's paper default
            injection_index = self.default_injection_index
        self.injection_index = injection_index
        self.beta_shift = beta_shift
        self.dropout_mag = dropout_mag
        self.dropout_head = dropout_head

        self.transformer = SplitTextBackbone(
            text_backbone, split_index=self.injection_index, name="text_backbone"
        )
        self.hidden_dim = self.transformer.hidden_dim
        self.nonverbal = [m for m in ("audio", "vision") if m in modalities]
        self.gate = (
            MultimodalAdaptationGate(
                beta_shift=beta_shift, dropout=dropout_mag, dtype=self.dtype_policy, name="mag"
            )
            if self.nonverbal
            else None
        )
        self.head_dropout = keras.layers.Dropout(dropout_head, dtype=self.dtype_policy)
        self.output_layer = keras.layers.Dense(1, dtype=self.dtype_policy, name="output")
        dims = {"text": self.hidden_dim, "audio": audio_dim, "vision": vision_dim}
        self.feature_dims = {m: dims[m] for m in modalities}
        self.fusion_dim = self.hidden_dim

    def _check_backbone(self, backbone):
        """Subclasses: a TypeError for a backbone of the wrong kind."""

    # ------------------------------------------------------------------ the contract
    def summarize(self, states, context, training=False):
        """The sentence vector z `[B, H]` from the last layer's token states."""
        raise NotImplementedError

    def forward(self, x, training=False):
        nonverbal = self._aligned_frames(x)
        states, context = self.transformer.bottom(x, training=training)
        mask = context["padding_mask"]
        h = {"text": masked_mean(states, mask)}
        for m in self.nonverbal:
            h[m] = masked_mean(nonverbal[m], mask)
        if self.gate is not None:
            states = self.gate(states, [nonverbal[m] for m in self.nonverbal], training=training)
        states = self.transformer.top(states, context, training=training)
        z = self.summarize(states, context, training=training)
        return {"h": h, "z": z, "prediction": self.head(z, training=training)}

    def encode(self, x, training=False):
        return self.forward(x, training=training)["h"]

    def fuse(self, h, training=False):
        raise NotImplementedError(
            f"{type(self).__name__} fuses the token sequences inside the transformer (MAG), not the unimodal "
            "vectors h: z is not a function of h. Use forward(x), which returns h, z and the prediction."
        )

    def head(self, z, training=False):
        return self.output_layer(self.head_dropout(z, training=training))[..., 0]

    def call(self, x, training=False):
        return self.forward(x, training=training)["prediction"]

    def _aligned_frames(self, x):
        """`{modality: [B, L, D]}` of the gate's inputs, checked against the word-aligned layout."""
        length = x["token_ids"].shape[1] if "token_ids" in x else None
        frames = {}
        for m in self.nonverbal:
            dim = self.audio_dim if m == "audio" else self.vision_dim
            check_aligned_frames(type(self).__name__, x, m, dim, length)
            frames[m] = ops.convert_to_tensor(x[m], dtype=self.compute_dtype)
        return frames

    def dummy_inputs(self, input_shape=None, batch=2):
        """A zero batch with one audio/vision frame per token position."""
        shapes = dict(input_shape or {})
        length = (shapes.get("token_ids") or (None, 8))[1] or 8
        shapes["token_ids"] = (None, length)
        for m, dim in (("audio", self.audio_dim), ("vision", self.vision_dim)):
            steps = (shapes.get(m) or (None, None))[1]
            shapes[m] = (None, steps or length, dim)
        return super().dummy_inputs(shapes, batch)

    def variable_groups(self):
        text = list(self.transformer.trainable_variables)
        taken = {id(v) for v in text}
        return {
            self.text_group: text,
            "main": [v for v in self.trainable_variables if id(v) not in taken],
        }

    # ------------------------------------------------------------------ workflow protocol
    @classmethod
    def optimizers_from_settings(cls, train):
        """Adam for the backbone (`lr_<text_group>`) and "main" (`lr_main`), both with decoupled weight decay
        `weight_decay` (0 or None: none) that spares biases and layer-norm parameters."""
        wd = train.get("weight_decay") or None
        optimizers = {}
        for group, lr in (
            (cls.text_group, train[f"lr_{cls.text_group}"]),
            ("main", train["lr_main"]),
        ):
            optimizer = keras.optimizers.Adam(lr, weight_decay=wd, name=f"adam_{group}")
            if wd:
                optimizer.exclude_from_weight_decay(var_names=["bias", "^gamma$", "^beta$"])
            optimizers[group] = optimizer
        return optimizers

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_backbone": keras.saving.serialize_keras_object(self.transformer.backbone),
                "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim,
                "modalities": list(self.modalities),
                "injection_index": self.injection_index,
                "beta_shift": self.beta_shift,
                "dropout_mag": self.dropout_mag,
                "dropout_head": self.dropout_head,
            }
        )
        return config


def masked_mean(sequence, mask):
    """The mean of `sequence` `[B, L, D]` over the positions where `mask` `[B, L]` is True (a row without any
    counts as one position, so the mean is 0, not 0/0)."""
    weights = ops.cast(mask, sequence.dtype)[..., None]
    count = ops.maximum(ops.sum(weights, axis=1), 1.0)
    return ops.sum(sequence * weights, axis=1) / count
