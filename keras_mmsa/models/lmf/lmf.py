"""`LMF`: Low-rank Multimodal Fusion — frozen-BERT text LSTM, time-averaged audio/vision MLPs, low-rank fusion."""

from __future__ import annotations

import keras

from keras_mmsa.configs import lmf as presets
from keras_mmsa.layers.low_rank_fusion import LowRankFusion
from keras_mmsa.models.frozen_text_backbone import FrozenTextBackbone


@keras.saving.register_keras_serializable(package="keras_mmsa")
class LMF(FrozenTextBackbone):
    """Low-rank Multimodal Fusion (Liu et al. 2018) over a frozen KerasHub text backbone, as MMSA runs it.

    Encoders (MMSA's LMF subnetworks):
    - text: the frozen backbone's last hidden states `[B, L, H]` (MMSA feeds precomputed BERT features) into an
      LSTM over the real tokens (`padding_mask`), its final state -> dropout -> Dense to `text_out`;
    - audio / vision: the mean of the valid frames (MMSA averages the unaligned features over time before the
      model) -> batch normalisation -> dropout -> three ReLU Dense layers of `audio_hidden` / `vision_hidden`.
    `encode` -> `{"text": h_t, "audio": h_a, "vision": h_v}` (the used modalities).

    Fusion and head. As in MMSA's LMF for regression, the low-rank fusion (`LowRankFusion`, output size 1) is
    itself the output layer: each `h_m` with a 1 appended is projected by `rank` factors, the projections are
    multiplied over the modalities, and the `rank` products are combined by the fusion weights plus a bias.
    `fuse` -> z = the `rank` products `prod_m (W_m^(i) [h_m; 1])`, `[B, rank]` (`fusion_dim == rank`; MMSA's
    `Feature_f`), and `head` -> y = `w . dropout(z) + b` `[B]`, a linear map of z (MDM's `A_θp`).

    The text backbone is a fixed feature extractor: it is not trainable and always runs in inference mode
    (no dropout), like MMSA's precomputed features. Variable groups: `"factors"` (the fusion factors, fusion
    weights and bias: MMSA's `factor_lr`) and `"main"` (the subnetworks: MMSA's `learning_rate`).

    Departures from MMSA's code: frames are averaged over each clip's valid frames (MMSA divides the sum by the
    padded length, so short clips get smaller features) and the text LSTM stops at the last real token (MMSA's
    runs over the padding); MMSA's optimizer leaves the fusion weights and bias out of both parameter groups
    (it takes parameters `[:3]` and `[5:]`), so they keep their random initialisation — here they train, in
    `"factors"`.

    Args:
        text_backbone: a KerasHub backbone (e.g. from `keras_mmsa.backbones.load_text_backbone`) or a
            `TextEncoder` with `output_mode="sequence"`; it is frozen.
        audio_dim: feature size of the acoustic frames (None: no audio).
        vision_dim: feature size of the visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension.
        text_hidden: LSTM units of the text subnetwork.
        text_out: size of h_t (MMSA: `text_hidden // 2`).
        audio_hidden, vision_hidden: width of the audio / vision MLPs (the sizes of h_a, h_v).
        dropout_text: dropout on the text LSTM's final state.
        dropout_audio, dropout_vision: dropout after the batch normalisation of the averaged frames.
        dropout_fusion: dropout on z before the head (MMSA creates one but never applies it).
        rank: number of low-rank factors per modality (the size of z).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    base = LMF(backbone, audio_dim=5, vision_dim=20, rank=3)
    batch, label = next(iter(keras_mmsa.data.load("sample", "train", 8, text_backbone=tokenizer)))
    out = base.forward(batch)  # {"h": {...}, "z": [8, 3], "prediction": [8]}
    ```

    Reference:
        Liu, Shen, Lakshminarasimhan, Liang, Zadeh, Morency. "Efficient Low-rank Multimodal Fusion with
        Modality-Specific Factors". ACL 2018, §3, eq. 5-7; MMSA's port (THUIAR/MMSA,
        `models/singleTask/LMF.py`, `config/config_regression.json`).
    """

    presets = presets

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        text_hidden=128,
        text_out=64,
        audio_hidden=16,
        vision_hidden=128,
        dropout_text=0.0,
        dropout_audio=0.3,
        dropout_vision=0.3,
        dropout_fusion=0.0,
        rank=3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        modalities = self._set_modalities(modalities, audio_dim, vision_dim)
        self.text_hidden = text_hidden
        self.text_out = text_out
        self.audio_hidden = audio_hidden
        self.vision_hidden = vision_hidden
        self.dropout_text = dropout_text
        self.dropout_audio = dropout_audio
        self.dropout_vision = dropout_vision
        self.dropout_fusion = dropout_fusion
        self.rank = rank

        self._make_unimodal_encoders(
            text_backbone,
            text_hidden=text_hidden,
            text_out=text_out,
            dropout_text=dropout_text,
            audio_hidden=audio_hidden,
            vision_hidden=vision_hidden,
            dropout_audio=dropout_audio,
            dropout_vision=dropout_vision,
        )
        self.fusion = LowRankFusion(output_dim=1, rank=rank, name="fusion")
        self.fusion_dropout = keras.layers.Dropout(dropout_fusion, dtype=self.dtype_policy)
        self.fusion_dim = rank

    def build(self, input_shape=None):
        if self.built:
            return
        # `fuse`/`head` reach into the fusion layer's parts, so build it here, under its own name scope.
        self.fusion.build([(None, self.feature_dims[m]) for m in self.modalities])
        super().build(input_shape)

    # ------------------------------------------------------------------ the contract
    def fuse(self, h, training=False):
        return self.fusion.rank_products([h[m] for m in self.modalities])[..., 0]

    def head(self, z, training=False):
        z = self.fusion_dropout(z, training=training)
        return self.fusion.combine(z[..., None])[..., 0]

    def variable_groups(self):
        factors = list(self.fusion.trainable_variables)
        taken = {id(v) for v in factors}
        return {
            "factors": factors,
            "main": [v for v in self.trainable_variables if id(v) not in taken],
        }

    # ------------------------------------------------------------------ workflow protocol
    @classmethod
    def optimizers_from_settings(cls, train):
        """Adam for "factors" (`lr_factors`) and "main" (`lr_main`); the L2 penalty becomes decoupled weight decay."""
        wd = train["weight_decay"]
        return {
            "factors": keras.optimizers.Adam(
                train["lr_factors"], weight_decay=wd, name="adam_factors"
            ),
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
                "text_hidden": self.text_hidden,
                "text_out": self.text_out,
                "audio_hidden": self.audio_hidden,
                "vision_hidden": self.vision_hidden,
                "dropout_text": self.dropout_text,
                "dropout_audio": self.dropout_audio,
                "dropout_vision": self.dropout_vision,
                "dropout_fusion": self.dropout_fusion,
                "rank": self.rank,
            }
        )
        return config
