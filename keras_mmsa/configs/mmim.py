"""MMIM hyper-parameters per dataset.

MOSI and MOSEI: the paper's Table 3 (Han et al. 2021) plus the reference code's defaults for what the table does
not list (output sizes 16, fusion 128, dropouts 0.1, weight decay 1e-4, ReduceLROnPlateau patience 20 with
factor 0.5, early-stopping patience 10). SIMS: MMSA's `config_regression.json` entry for MMIM (bidirectional
LSTMs of 16 units, clip 1.0, lr_mmilb 1e-3, alpha = beta = 0.1, early stop 8). `sample` is the bundled synthetic
set: MOSI's settings with the tiny offline backbone and fewer epochs.

`model` holds `MMIM.__init__` arguments; `train` holds the optimisation settings used by
`MMIM.default_optimizers` and the training loop.
"""

import copy

_COMMON_MODEL = dict(
    audio_out=16,
    vision_out=16,
    lstm_layers=1,
    bidirectional=False,
    dropout_audio=0.1,
    dropout_vision=0.1,
    dropout_fusion=0.1,
    fusion_dim=128,
    cpc_layers=1,
    cpc_activation="tanh",
    q_activation="relu",
    mem_size=1,
)

_COMMON_TRAIN = dict(
    lr_bert=5e-5,
    weight_decay=1e-4,
    clipnorm=5.0,
    epochs=40,
    patience=10,
    lr_patience=20,
    lr_factor=0.5,
    alternation="epoch",
    stage1_fraction=1.0,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
)

PRESETS = {
    "mosi": dict(
        model=dict(_COMMON_MODEL, alpha=0.3, beta=0.1, audio_hidden=32, vision_hidden=32),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_lld=5e-3, lr_main=1e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=dict(_COMMON_MODEL, alpha=0.1, beta=0.05, audio_hidden=16, vision_hidden=64),
        # Algorithm 1's D_sub: the reference code uses the first half of the batches for stage 1 on MOSEI.
        train=dict(_COMMON_TRAIN, batch_size=64, lr_lld=1e-3, lr_main=5e-4, stage1_fraction=0.5),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=dict(
            _COMMON_MODEL,
            alpha=0.1,
            beta=0.1,
            audio_hidden=16,
            vision_hidden=16,
            bidirectional=True,
        ),
        train=dict(
            _COMMON_TRAIN, batch_size=32, lr_lld=1e-3, lr_main=1e-3, clipnorm=1.0, patience=8
        ),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    "sample": dict(
        model=dict(_COMMON_MODEL, alpha=0.3, beta=0.1, audio_hidden=32, vision_hidden=32),
        train=dict(
            _COMMON_TRAIN,
            batch_size=32,
            lr_lld=5e-3,
            lr_main=1e-3,
            lr_bert=1e-3,
            epochs=12,
            patience=6,
            lr_patience=3,
        ),
        text_backbone="tiny",
    ),
}

# Dataset (builder config) name -> preset family.
FAMILY_OF = {
    "sample": "sample",
    "mosi_unaligned": "mosi",
    "mosi_aligned": "mosi",
    "mosi_sdk": "mosi",
    "mosi_label_csv": "mosi",
    "mosei_unaligned": "mosei",
    "mosei_aligned": "mosei",
    "mosei_sdk": "mosei",
    "mosei_label_csv": "mosei",
    "sims_unaligned": "sims",
    "sims_label_csv": "sims",
}


def get_preset(name):
    """Returns a deep copy of the preset for a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    key = FAMILY_OF.get(name, name)
    if key not in PRESETS:
        raise ValueError(
            f"no MMIM preset for {name!r}; known: {sorted(PRESETS)} and datasets {sorted(FAMILY_OF)}"
        )
    return copy.deepcopy(PRESETS[key])
