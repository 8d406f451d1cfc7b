"""`BertLSTMMLP` (MMIM's base model, trained alone) hyper-parameters per dataset.

The base-model part of MMIM's presets (Han et al. 2021, Table 3, plus the reference code's defaults for what the
table does not list: output sizes 16, fusion 128, fusion dropout 0.1, weight decay 1e-4, ReduceLROnPlateau
patience 20 with factor 0.5, early-stopping patience 10; SIMS from MMSA's `config_regression.json` MMIM entry).

Encoder dropout: the reference code passes `dropout_a`/`dropout_v` to its LSTM encoders only when they have
more than one layer (`dropout if n_layer > 1 else 0.0`), and that dropout is applied to the final state; with
Table 3's one-layer encoders the effective rate is 0.0, so the presets say 0.0 (`--set model.dropout_audio=0.1`
gives the rate the reference names).
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "MODEL_KEYS", "PRESETS", "get_preset"]

_COMMON_MODEL = dict(
    audio_out=16,
    vision_out=16,
    lstm_layers=1,
    bidirectional=False,
    dropout_audio=0.0,
    dropout_vision=0.0,
    dropout_fusion=0.1,
    fusion_dim=128,
    standardize=[],
    fusion_activation="tanh",
)

_COMMON_TRAIN = dict(
    lr_bert=5e-5,
    weight_decay=1e-4,
    clipnorm=5.0,
    epochs=40,
    patience=10,
    lr_patience=20,
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
    backup=True,  # end-of-epoch snapshots in <run>/backup/ (resume); false: none, no resume
)

PRESETS = {
    "mosi": dict(
        model=dict(_COMMON_MODEL, audio_hidden=32, vision_hidden=32),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=dict(_COMMON_MODEL, audio_hidden=16, vision_hidden=64),
        train=dict(_COMMON_TRAIN, batch_size=64, lr_main=5e-4),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=dict(_COMMON_MODEL, audio_hidden=16, vision_hidden=16, bidirectional=True),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3, clipnorm=1.0, patience=8),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    # The bundled synthetic set: MOSI's settings with the tiny offline backbone and fewer epochs.
    "sample": dict(
        model=dict(_COMMON_MODEL, audio_hidden=32, vision_hidden=32),
        train=dict(
            _COMMON_TRAIN,
            batch_size=32,
            lr_main=1e-3,
            lr_bert=1e-3,
            epochs=12,
            patience=6,
            lr_patience=3,
        ),
        text_backbone="tiny",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    return lookup(PRESETS, name, method="BertLSTMMLP")
