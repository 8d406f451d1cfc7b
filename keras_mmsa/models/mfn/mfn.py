"""`MFN`: the Memory Fusion Network over word-aligned features — LSTM system, attention, gated memory."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.configs import mfn as presets
from keras_mmsa.layers.memory_fusion import MemoryFusion
from keras_mmsa.models.aligned_text_backbone import AlignedTextBackbone


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MFN(AlignedTextBackbone):
    """The Memory Fusion Network (Zadeh et al. 2018) as MMSA runs it, as a base model over word-aligned inputs.

    One LSTM per used modality steps through the aligned sequence in lockstep with the others: text reads the
    FROZEN text backbone's token states (MMSA feeds fixed BERT features; the backbone is part of the model, runs
    in inference mode and is never trained), audio / vision their aligned frames (`requires_aligned`). At every
    step a delta-memory attention weighs the LSTMs' previous and current cell memories and a multi-view gated
    memory u is updated from them (`keras_mmsa.layers.MemoryFusion`). The output network reads the final
    hidden states and the final memory: Dense(`output_units`, ReLU) -> dropout -> Dense(1).

    What the contract returns:
    - h (`encode`): each LSTM's final hidden state (after the last real token), `feature_dims` =
      `{text: text_hidden, audio: audio_hidden, vision: vision_hidden}` (the used modalities).
    - z: `[h_text; h_audio; h_vision; u]`, the final hidden states and memory that the output network reads
      (MMSA's `last_hs`; `fusion_dim = sum of the hidden sizes + memory_dim`). The memory is computed along
      the sequence, not from h: `forward(x)` gives h, z and the prediction in one pass, and `fuse(h)` raises.
    - `head`: the output network, linear at the end (MMSA's MFN has no output squashing), `[B]`.

    One variable group, `"main"` (the text backbone is frozen).

    Departures from MMSA's port, on purpose: the recurrence runs over the first `sum(padding_mask)` positions
    of each row and every state (hidden, cell, memory) keeps its value on the padding steps, so h and z are
    those after the last real token and padding cannot change the output (MMSA steps through all L positions,
    padding included); the acoustic/visual frames are not averaged over time (MMSA's `need_normalized` for MFN
    does that, which leaves MFN one frame to step through; see `keras_mmsa/configs/mfn.py`).

    Args:
        text_backbone: a KerasHub backbone (e.g. from `keras_mmsa.backbones.load_text_backbone`) or a
            `TextEncoder` with `output_mode="sequence"`; it is frozen here.
        audio_dim: feature size of the aligned acoustic frames (None: no audio).
        vision_dim: feature size of the aligned visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension.
        text_hidden, audio_hidden, vision_hidden: units of each modality's LSTM (the sizes of h).
        memory_dim: size of the multi-view gated memory.
        attention_units, attention_dropout: hidden width and dropout of the attention network.
        proposal_units, proposal_dropout: of the network proposing the memory update.
        retain_units, retain_dropout: of the retain gate's network (gamma 1).
        update_units, update_dropout: of the update gate's network (gamma 2).
        output_units, output_dropout: of the output network.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    base = MFN(backbone, audio_dim=5, vision_dim=20, text_hidden=16, audio_hidden=4, vision_hidden=8,
               memory_dim=12)
    # x: an aligned batch (audio [B, L, 5], vision [B, L, 20], L = token_ids' length)
    out = base.forward(x)  # {"h": {"text": [B, 16], "audio": [B, 4], "vision": [B, 8]}, "z": [B, 40], ...}
    ```

    Reference:
        Zadeh, Liang, Mazumder, Poria, Cambria, Morency. "Memory Fusion Network for Multi-view Sequential
        Learning". AAAI 2018, §3. Hyper-parameters and output network as in MMSA (Yu et al.;
        `MMSA/models/singleTask/MFN.py`, `config/config_regression.json`).
    """

    presets = presets

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        text_hidden=256,
        audio_hidden=32,
        vision_hidden=256,
        memory_dim=400,
        attention_units=32,
        attention_dropout=0.2,
        proposal_units=64,
        proposal_dropout=0.0,
        retain_units=256,
        retain_dropout=0.7,
        update_units=32,
        update_dropout=0.5,
        output_units=128,
        output_dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._set_modalities(modalities, audio_dim, vision_dim)
        self.text_hidden = text_hidden
        self.audio_hidden = audio_hidden
        self.vision_hidden = vision_hidden
        self.memory_dim = memory_dim
        self.attention_units = attention_units
        self.attention_dropout = attention_dropout
        self.proposal_units = proposal_units
        self.proposal_dropout = proposal_dropout
        self.retain_units = retain_units
        self.retain_dropout = retain_dropout
        self.update_units = update_units
        self.update_dropout = update_dropout
        self.output_units = output_units
        self.output_dropout = output_dropout

        self._make_text_encoder(text_backbone)
        hidden = {"text": text_hidden, "audio": audio_hidden, "vision": vision_hidden}
        self.feature_dims = {m: hidden[m] for m in self.modalities}
        self.fusion_dim = sum(self.feature_dims.values()) + memory_dim
        self.memory_fusion = MemoryFusion(
            [self.feature_dims[m] for m in self.modalities],
            memory_dim,
            attention_units=attention_units,
            attention_dropout=attention_dropout,
            proposal_units=proposal_units,
            proposal_dropout=proposal_dropout,
            retain_units=retain_units,
            retain_dropout=retain_dropout,
            update_units=update_units,
            update_dropout=update_dropout,
            dtype=self.dtype_policy,
            name="memory_fusion",
        )
        self.output_hidden = keras.layers.Dense(
            output_units, activation="relu", dtype=self.dtype_policy, name="output_hidden"
        )
        self.output_dropout_layer = keras.layers.Dropout(output_dropout, dtype=self.dtype_policy)
        self.output_layer = keras.layers.Dense(1, dtype=self.dtype_policy, name="output")

    # ------------------------------------------------------------------ the contract
    def forward(self, x, training=False):
        sequences, mask = self.aligned_inputs(x)
        hiddens, memory = self.memory_fusion(
            [sequences[m] for m in self.modalities], mask, training=training
        )
        z = ops.concatenate(list(hiddens) + [memory], axis=-1)
        h = dict(zip(self.modalities, hiddens))
        return {"h": h, "z": z, "prediction": self.head(z, training=training)}

    def head(self, z, training=False):
        hidden = self.output_dropout_layer(self.output_hidden(z), training=training)
        return ops.squeeze(self.output_layer(hidden), axis=-1)

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
                "memory_dim": self.memory_dim,
                "attention_units": self.attention_units,
                "attention_dropout": self.attention_dropout,
                "proposal_units": self.proposal_units,
                "proposal_dropout": self.proposal_dropout,
                "retain_units": self.retain_units,
                "retain_dropout": self.retain_dropout,
                "update_units": self.update_units,
                "update_dropout": self.update_dropout,
                "output_units": self.output_units,
                "output_dropout": self.output_dropout,
            }
        )
        return config
