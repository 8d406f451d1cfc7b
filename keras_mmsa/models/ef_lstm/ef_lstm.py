"""`EFLSTM`: early-fusion LSTM over word-aligned features — per-token concatenation, batch norm, LSTM, dense."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.configs import ef_lstm as presets
from keras_mmsa.layers.sequence_encoder import SequenceEncoder
from keras_mmsa.models.aligned_text_backbone import AlignedTextBackbone, masked_mean


@keras.saving.register_keras_serializable(package="keras_mmsa")
class EFLSTM(AlignedTextBackbone):
    """The early-fusion LSTM (EF-LSTM) baseline as MMSA runs it, as a base model over word-aligned inputs.

    Per token t, the inputs of the used modalities are concatenated: `[s_t; a_t; v_t]`, where s_t is the FROZEN
    text backbone's last-layer state of token t (MMSA feeds fixed BERT features; the backbone is part of the
    model, runs in inference mode and is never trained) and a_t / v_t the aligned acoustic / visual frames
    (`requires_aligned`). That sequence is batch-normalised per feature, read by a stack of `num_layers` LSTMs,
    and the last layer's final state goes through dropout -> Dense(`hidden_dim`, ReLU) -> dropout -> Dense(1).

    What the contract returns, since the fusion is early (before any unimodal encoder):
    - h (`encode`): per modality, the mean over the read positions of its normalised per-token inputs, so
      `feature_dims` are the input sizes (text: the backbone's hidden size; audio_dim; vision_dim). They carry
      no trained encoder of their own (only the batch norm's scale and offset) but give methods that need
      unimodal vectors one per modality.
    - z: the final LSTM state after dropout and the ReLU dense layer (`fusion_dim = hidden_dim`), the
      representation the output layer reads. z is computed from the token sequence, not from h: `forward(x)`
      gives h, z and the prediction in one pass, and `fuse(h)` raises.
    - `head`: dropout -> a linear layer to one unit (MMSA's EF-LSTM has no output squashing), `[B]`.

    One variable group, `"main"` (the text backbone is frozen).

    Departures from MMSA's port, on purpose:
    - Normalisation: MMSA's `BatchNorm1d(seq_len)` on `[B, L, D]` takes the L positions as its channels, so it
      normalises each position over the batch and all features of the three modalities together (BERT states
      and raw acoustic/visual features on one scale). Here each feature is normalised over the batch's real
      token positions (a masked batch norm; PyTorch's momentum 0.1 and epsilon 1e-5), which is what a batch
      norm over features means and what keeps the acoustic/visual features from being drowned by BERT's scale.
    - Padding: the LSTM reads the first `sum(padding_mask)` positions of each row and stops at its last real
      token (MMSA's runs over the padding and takes the state after position L); the batch norm's statistics
      and h leave the padding out too. What sits on padding positions does not change any output.

    Args:
        text_backbone: a KerasHub backbone (e.g. from `keras_mmsa.backbones.load_text_backbone`) or a
            `TextEncoder` with `output_mode="sequence"`; it is frozen here.
        audio_dim: feature size of the aligned acoustic frames (None: no audio).
        vision_dim: feature size of the aligned visual frames (None: no vision).
        modalities: the modalities used (must contain "text"); default: every one with a dimension.
        hidden_dim: LSTM units and width of the dense layer after it (the size of z).
        num_layers: stacked LSTM layers.
        dropout: dropout between the LSTM layers, on the final state and before the output layer.
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    ```python
    backbone, tokenizer = keras_mmsa.backbones.load_text_backbone("tiny")
    base = EFLSTM(backbone, audio_dim=5, vision_dim=20, hidden_dim=16, num_layers=2)
    # x: an aligned batch (audio [B, L, 5], vision [B, L, 20], L = token_ids' length)
    out = base.forward(x)  # {"h": {"text": [B, 64], "audio": [B, 5], "vision": [B, 20]}, "z": [B, 16], ...}
    ```

    Reference:
        Cambria, Hazarika, Poria, Hussain, Subramanyam. "Benchmarking Multimodal Sentiment Analysis".
        CICLing 2017 (early fusion of feature vectors); the LSTM form and hyper-parameters of MMSA (Yu et al.;
        `MMSA/models/singleTask/EF_LSTM.py`, `config/config_regression.json`), the EF-LSTM baseline of
        Colombo et al. 2021 (MDM), §4.
    """

    presets = presets

    def __init__(
        self,
        text_backbone,
        audio_dim=None,
        vision_dim=None,
        modalities=None,
        hidden_dim=128,
        num_layers=4,
        dropout=0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._set_modalities(modalities, audio_dim, vision_dim)
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = dropout

        self._make_text_encoder(text_backbone)
        self.feature_dims = self.input_dims()
        self.fusion_dim = hidden_dim
        # PyTorch's BatchNorm defaults (momentum 0.1 on the new statistic, eps 1e-5).
        self.norm = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name="norm"
        )
        # LSTM stack -> dropout -> Dense(hidden_dim); the ReLU follows in `forward`.
        self.lstm = SequenceEncoder(
            hidden_dim, hidden_dim, num_layers=num_layers, dropout=dropout, name="lstm"
        )
        self.head_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.output_layer = keras.layers.Dense(1, dtype=self.dtype_policy, name="output")

    # ------------------------------------------------------------------ the contract
    def forward(self, x, training=False):
        sequences, mask = self.aligned_inputs(x)
        fused = ops.concatenate([sequences[m] for m in self.modalities], axis=-1)
        normed = self.norm(fused, training=training, mask=mask)
        h, start = {}, 0
        for m in self.modalities:
            width = self.feature_dims[m]
            h[m] = masked_mean(normed[..., start : start + width], mask)
            start += width
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        # (the LSTM reads `lengths` positions; zeroing the rest also drops the mask Keras attached to `normed`)
        normed = ops.where(mask[..., None], normed, 0.0)
        z = ops.relu(self.lstm(normed, lengths, training=training))
        return {"h": h, "z": z, "prediction": self.head(z, training=training)}

    def head(self, z, training=False):
        return ops.squeeze(self.output_layer(self.head_dropout(z, training=training)), axis=-1)

    # ------------------------------------------------------------------ serialization
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_backbone": keras.saving.serialize_keras_object(self.text_encoder),
                "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim,
                "modalities": list(self.modalities),
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "dropout": self.dropout,
            }
        )
        return config
