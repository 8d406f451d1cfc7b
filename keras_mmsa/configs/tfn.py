"""`TFN` (Tensor Fusion Network, trained alone) hyper-parameters per dataset.

MOSI / MOSEI / SIMS: MMSA's `config/config_regression.json` entry `tfn` (THUIAR/MMSA). Its `hidden_dims` are
ordered (text, audio, vision) and its `dropouts` (audio, vision, text, post-fusion). Its trainer
(`trains/singleTask/TFN.py`) uses plain Adam at `learning_rate` (no weight decay, no learning-rate schedule,
no gradient clipping) and trains until the validation loss has not improved for `early_stop` = 8 epochs;
here that is `patience=8` with `lr_patience=None` (never decay) and a cap of 100 epochs.

Text dropout: MMSA's text subnetwork zeroes its dropout for a one-layer LSTM (`dropout = 0.0 if num_layers
== 1`), so the text dropout it names (0.3 / 0.4) is never applied; the presets say 0.0 (`--set
model.dropout_text=0.3` gives the named rate).

`sample` is the bundled synthetic set: MOSI's architecture with the tiny offline backbone, few epochs.
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "MODEL_KEYS", "PRESETS", "get_preset"]

_COMMON_MODEL = dict(
    text_layers=1,
    dropout_text=0.0,  # see the module docstring: MMSA's one-layer text LSTM applies none
    output_range=[-3.0, 3.0],  # MMSA: sigmoid scaled to (-3, 3) for every dataset, SIMS included
)

_COMMON_TRAIN = dict(
    weight_decay=0.0,
    clipnorm=None,
    epochs=100,  # MMSA trains until early stopping; a cap
    patience=8,  # MMSA's early_stop
    lr_patience=None,  # MMSA has no learning-rate schedule
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
    # The frozen text backbone's token states computed once per example instead of every step (same
    # result, see FrozenTextBackbone); false runs the backbone in every step.
    cache_text_features=True,
)


def _mmsa(hidden_dims, text_out, post_fusion_dim, dropouts):
    """The model settings from MMSA's lists: hidden_dims (text, audio, vision), dropouts (a, v, t, post)."""
    text_hidden, audio_hidden, vision_hidden = hidden_dims
    dropout_audio, dropout_vision, _text, dropout_fusion = dropouts
    return dict(
        _COMMON_MODEL,
        text_hidden=text_hidden,
        audio_hidden=audio_hidden,
        vision_hidden=vision_hidden,
        text_out=text_out,
        post_fusion_dim=post_fusion_dim,
        dropout_audio=dropout_audio,
        dropout_vision=dropout_vision,
        dropout_fusion=dropout_fusion,
    )


PRESETS = {
    "mosi": dict(
        model=_mmsa([128, 32, 128], 32, 64, [0.3, 0.3, 0.3, 0.5]),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=_mmsa([128, 16, 128], 128, 16, [0.4, 0.4, 0.4, 0.4]),
        train=dict(_COMMON_TRAIN, batch_size=128, lr_main=5e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=_mmsa([128, 32, 128], 256, 32, [0.4, 0.4, 0.4, 0.4]),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=5e-4),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    # The bundled synthetic set: MOSI's settings with the tiny offline backbone and fewer epochs.
    "sample": dict(
        model=_mmsa([128, 32, 128], 32, 64, [0.3, 0.3, 0.3, 0.5]),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3, epochs=8, patience=4),
        text_backbone="tiny",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    return lookup(PRESETS, name, method="TFN")
