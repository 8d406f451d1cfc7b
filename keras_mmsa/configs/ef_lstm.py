"""`EFLSTM` (early-fusion LSTM, trained alone) hyper-parameters per dataset.

MOSI / MOSEI / SIMS: the `ef_lstm` entry of MMSA's `config/config_regression.json` (THUIAR/MMSA): `hidden_dims`
(here `hidden_dim`), `num_layers`, `dropout`, `batch_size`, `learning_rate` (`lr_main`) and `weight_decay`
(PyTorch Adam's L2 penalty; here Keras Adam's decoupled weight decay at that rate). MMSA's trainer
(`trains/singleTask/EF_LSTM.py`) uses plain Adam with no learning-rate schedule and no gradient clipping and
stops when the validation loss has not improved for `early_stop` = 8 epochs: `patience=8`,
`lr_patience=None`, and a cap of 100 epochs.

EF-LSTM needs word-aligned inputs (MMSA: `need_data_aligned`): `mosi_aligned`, `mosei_aligned`. MMSA lists
SIMS settings, but SIMS has no aligned features (MMSA's SIMS entry is unaligned only); the `sims` preset is
kept for aligned SIMS features of one's own.

`sample` is the bundled synthetic set (its word-aligned form): MOSI's settings with the tiny offline
backbone and few epochs.
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


def _model(hidden_dim, num_layers, dropout):
    return dict(hidden_dim=hidden_dim, num_layers=num_layers, dropout=dropout)


PRESETS = {
    "mosi": dict(
        model=_model(128, 4, 0.5),
        train=dict(_COMMON_TRAIN, batch_size=32, lr_main=1e-3, weight_decay=5e-3),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=_model(256, 2, 0.4),
        train=dict(_COMMON_TRAIN, batch_size=128, lr_main=5e-3, weight_decay=1e-4),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=_model(32, 3, 0.5),
        train=dict(_COMMON_TRAIN, batch_size=128, lr_main=5e-4, weight_decay=1e-3),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    # The bundled synthetic set: MOSI's settings with the tiny offline backbone and fewer epochs.
    "sample": dict(
        model=_model(128, 4, 0.5),
        train=dict(
            _COMMON_TRAIN, batch_size=32, lr_main=1e-3, weight_decay=5e-3, epochs=8, patience=4
        ),
        text_backbone="tiny",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_aligned"`)."""
    return lookup(PRESETS, name, method="EF-LSTM")
