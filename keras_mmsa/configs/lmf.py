"""`LMF` (Low-rank Multimodal Fusion, Liu et al. 2018, trained alone) hyper-parameters per dataset.

MOSI / MOSEI / SIMS: the `lmf` entry of MMSA's `config/config_regression.json` (THUIAR/MMSA). Its
`hidden_dims` are (text, audio, video) and give `text_hidden`, `audio_hidden`, `vision_hidden`; the text
subnetwork's output is `text_hidden // 2` (MMSA's LMF sets it so); `rank`, `batch_size`, `weight_decay`, and the
two learning rates: `factor_lr` (the fusion factors, here `lr_factors`) and `learning_rate` (the rest,
`lr_main`); `early_stop` 8 gives `patience`. MMSA trains until early stopping with no epoch cap and no
learning-rate schedule, so `epochs` is a cap that early stopping reaches first and `lr_patience` is None.

Dropouts: the config lists (audio, video, text, post-fusion). The audio/video rates are those of the MLP
subnetworks' input dropout. The text rate is passed to a one-layer LSTM subnetwork, which zeroes it (`dropout if
num_layers > 1`), and the post-fusion dropout is created but never applied in MMSA's forward pass; both are
therefore 0.0 here, the rates in effect (`--set model.dropout_text=0.3` gives the named rate).
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "MODEL_KEYS", "PRESETS", "get_preset"]

_COMMON_TRAIN = dict(
    clipnorm=None,  # MMSA clips no gradient for LMF
    epochs=100,  # a cap: MMSA stops on patience only
    patience=8,  # MMSA's early_stop
    lr_patience=None,  # MMSA keeps both learning rates constant
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
    # The frozen text backbone's token states computed once per example instead of every step (same
    # result, see FrozenTextBackbone); false runs the backbone in every step.
    cache_text_features=True,
)


def _model(text_hidden, audio_hidden, vision_hidden, dropout, rank):
    return dict(
        text_hidden=text_hidden,
        text_out=text_hidden // 2,
        audio_hidden=audio_hidden,
        vision_hidden=vision_hidden,
        dropout_audio=dropout,
        dropout_vision=dropout,
        dropout_text=0.0,
        dropout_fusion=0.0,
        rank=rank,
    )


PRESETS = {
    "mosi": dict(
        model=_model(128, 16, 128, dropout=0.3, rank=3),
        train=dict(_COMMON_TRAIN, batch_size=64, lr_main=1e-3, lr_factors=1e-3, weight_decay=5e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=_model(128, 16, 128, dropout=0.2, rank=4),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3, lr_factors=1e-3, weight_decay=1e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=_model(64, 16, 64, dropout=0.2, rank=4),
        train=dict(_COMMON_TRAIN, batch_size=64, lr_main=2e-3, lr_factors=5e-4, weight_decay=5e-3),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    # The bundled synthetic set: MOSI's architecture with the tiny offline backbone (random, frozen), 30 short
    # epochs at 3x MOSI's learning rates (about a second each on a CPU after the first epoch's compilation).
    "sample": dict(
        model=_model(128, 16, 128, dropout=0.3, rank=3),
        train=dict(
            _COMMON_TRAIN,
            batch_size=32,
            lr_main=3e-3,
            lr_factors=3e-3,
            weight_decay=5e-3,
            epochs=30,
        ),
        text_backbone="tiny",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    return lookup(PRESETS, name, method="LMF")
