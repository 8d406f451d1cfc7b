"""MMIM hyper-parameters per dataset: its base model's (`bert_lstm_mlp.py`) plus the MI terms' settings.

MOSI and MOSEI: the paper's Table 3 (Han et al. 2021) plus the reference code's defaults for what the table does
not list (CPC depth 1 with tanh, q's ReLU networks, history memory of one batch). SIMS: MMSA's
`config_regression.json` entry for MMIM (lr_mmilb 1e-3, alpha = beta = 0.1). `sample` is the bundled
synthetic set: MOSI's settings with the tiny offline backbone and fewer epochs.

`model` holds `MMIM` / `BertLSTMMLP` constructor arguments; `train` the optimisation settings read by
`MMIM.optimizers_from_settings` and the workflow (`alternation`, `stage1_fraction`: Algorithm 1's schedule).
"""

from keras_mmsa.configs import bert_lstm_mlp
from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "PRESETS", "get_preset"]

_MI_MODEL = dict(cpc_layers=1, cpc_activation="tanh", q_activation="relu", mem_size=1)
_MI_TRAIN = dict(alternation="epoch", stage1_fraction=1.0)

_MI = {
    "mosi": (dict(alpha=0.3, beta=0.1), dict(lr_lld=5e-3)),
    # Algorithm 1's D_sub: the reference code uses the first half of the batches for stage 1 on MOSEI.
    "mosei": (dict(alpha=0.1, beta=0.05), dict(lr_lld=1e-3, stage1_fraction=0.5)),
    "sims": (dict(alpha=0.1, beta=0.1), dict(lr_lld=1e-3)),
    "sample": (dict(alpha=0.3, beta=0.1), dict(lr_lld=5e-3)),
}

PRESETS = {}
for _family, (_model, _train) in _MI.items():
    _base = bert_lstm_mlp.get_preset(_family)
    PRESETS[_family] = dict(
        model={**_base["model"], **_MI_MODEL, **_model},
        train={**_base["train"], **_MI_TRAIN, **_train},
        text_backbone=_base["text_backbone"],
    )


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    return lookup(PRESETS, name, method="MMIM")
