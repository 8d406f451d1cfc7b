"""`MFN` (Memory Fusion Network, trained alone) hyper-parameters per dataset.

MOSI / MOSEI / SIMS: the `mfn` entry of MMSA's `config/config_regression.json` (THUIAR/MMSA). Its names map to
the `MFN` arguments as: `hidden_dims` (text, audio, vision) -> `text_hidden`, `audio_hidden`, `vision_hidden`;
`memsize` -> `memory_dim`; `NN1Config` (the attention network) -> `attention_units`/`attention_dropout`;
`NN2Config` (the proposed memory update) -> `proposal_units`/`proposal_dropout`; `gamma1Config` (retain
gate) -> `retain_units`/`retain_dropout`; `gamma2Config` (update gate) -> `update_units`/`update_dropout`;
`outConfig` (the output network) -> `output_units`/`output_dropout`; `windowsize` is 2 everywhere (the
previous and current step: fixed in `MemoryFusion`). Training: `batch_size`, `learning_rate` (`lr_main`),
`weight_decay` (PyTorch Adam's L2 penalty; here Keras Adam's decoupled weight decay at that rate); MMSA's
trainer (`trains/singleTask/MFN.py`) has no learning-rate schedule and no gradient clipping and stops when
the validation loss has not improved for `early_stop` = 8 epochs: `patience=8`, `lr_patience=None`, a cap
of 100 epochs.

MFN needs word-aligned inputs (MMSA: `need_data_aligned`): `mosi_aligned`, `mosei_aligned`. MMSA lists SIMS
settings, but SIMS has no aligned features (MMSA's SIMS entry is unaligned only); the `sims` preset is kept
for aligned SIMS features of one's own. MMSA's config also sets `need_normalized`, which makes its loader
average the acoustic and visual sequences over time into one frame; MFN steps through every aligned frame, so
here no averaging takes place.

`sample` is the bundled synthetic set (its word-aligned form): MOSI's settings with the tiny offline backbone
and few epochs.
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "MODEL_KEYS", "PRESETS", "get_preset"]

_COMMON_TRAIN = dict(
    clipnorm=None,  # MMSA clips no gradient
    epochs=100,  # a cap: MMSA stops on patience only
    patience=8,  # MMSA's early_stop
    lr_patience=None,  # MMSA has no learning-rate schedule
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
    # The frozen text backbone's token states computed once per example instead of every step (same
    # result, see FrozenTextBackbone); false runs the backbone in every step.
    cache_text_features=True,
)


def _mmsa(hidden_dims, memsize, nn1, nn2, gamma1, gamma2, out):
    """The model settings from MMSA's lists: hidden_dims (text, audio, vision), memsize, and for each network
    its (drop, shapes) pair."""
    text_hidden, audio_hidden, vision_hidden = hidden_dims
    settings = dict(
        text_hidden=text_hidden,
        audio_hidden=audio_hidden,
        vision_hidden=vision_hidden,
        memory_dim=memsize,
    )
    for name, (drop, shapes) in zip(
        ("attention", "proposal", "retain", "update", "output"), (nn1, nn2, gamma1, gamma2, out)
    ):
        settings[f"{name}_units"] = shapes
        settings[f"{name}_dropout"] = drop
    return settings


_MOSI_MODEL = _mmsa([256, 32, 256], 400, (0.2, 32), (0.0, 64), (0.7, 256), (0.5, 32), (0.0, 128))

PRESETS = {
    "mosi": dict(
        model=_MOSI_MODEL,
        train=dict(_COMMON_TRAIN, batch_size=128, lr_main=2e-3, weight_decay=0.0),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=_mmsa(
            [128, 32, 128], 128, (0.2, 128), (0.5, 128), (0.7, 256), (0.0, 256), (0.5, 128)
        ),
        train=dict(_COMMON_TRAIN, batch_size=64, lr_main=5e-4, weight_decay=1e-4),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=_mmsa([64, 16, 64], 64, (0.2, 128), (0.0, 128), (0.2, 64), (0.7, 64), (0.7, 64)),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3, weight_decay=0.0),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    # The bundled synthetic set: MOSI's settings with the tiny offline backbone and fewer epochs.
    "sample": dict(
        model=dict(_MOSI_MODEL),
        train=dict(
            _COMMON_TRAIN, batch_size=128, lr_main=2e-3, weight_decay=0.0, epochs=8, patience=4
        ),
        text_backbone="tiny",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_aligned"`)."""
    return lookup(PRESETS, name, method="MFN")
