"""`MAGXLNet` (MAG-XLNet, Rahman et al. 2020, trained alone) hyper-parameters per dataset.

MMSA has no MAG-XLNet. MOSI / MOSEI: the defaults of the reference code (WasifurRahman/BERT_multimodal_transformer,
`multimodal_driver.py` and `global_configs.py`; the same for both datasets): xlnet-base-cased, batch size 48,
learning rate 1e-5 (one optimizer over every parameter: here both `lr_xlnet` and `lr_main`), AdamW with weight
decay 0.01 sparing biases and layer-norm parameters, `beta_shift` 1.0, MAG dropout (`dropout_prob`) 0.5, MAG
after the first XLNet layer (`XLNET_INJECTION_INDEX = 1`), 40 epochs; XLNet's summary dropout 0.1
(`dropout_head`). The reference code runs all 40 epochs (no early stopping; `patience` None) and reports the
best test accuracy over epochs; here the best-on-validation weights are kept and the test split is read once.

Departures from the reference training (not expressible as settings here): it decays the learning rate
linearly to 0 after a 10% linear warm-up (here: constant) and minimises the mean squared error (here the L1
loss of `Supervised`, as MMSA's MAG-BERT).

SIMS: no reference (the MAG paper has no Chinese XLNet run): MMSA's MAG-BERT values for SIMS (learning rate
5e-5, MAG dropout 0.1, batch 32, weight decay 0, early stopping 8), with a Chinese XLNet that must be given as a
local preset directory; like MAG-BERT's it needs word-aligned SIMS features, which the toolkit does not provide.

KerasHub 0.32 ships no XLNet presets, so `text_backbone` "xlnet_base_cased" is a name to replace by a local
KerasHub preset directory of an XLNet (see `keras_mmsa.backbones`); loading it by name fails at once with a
message saying so. `sample`: the tiny offline XLNet (`"tiny_xlnet"`, random) on the bundled synthetic set, MAG
dropout 0.3, learning rate 1e-3, no weight decay, 12 epochs; measured on the sample made word-aligned
(`tests/test_mag.py`): test MAE 0.47 / r 0.94 (constant predictor 1.26).
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "MODEL_KEYS", "PRESETS", "get_preset"]

_REFERENCE_TRAIN = dict(
    batch_size=48,
    lr_xlnet=1e-5,
    lr_main=1e-5,
    weight_decay=0.01,
    clipnorm=None,
    epochs=40,
    patience=None,  # the reference code runs every epoch
    lr_patience=None,
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
)


def _model(dropout_mag):
    return dict(injection_index=1, beta_shift=1.0, dropout_mag=dropout_mag, dropout_head=0.1)


PRESETS = {
    "mosi": dict(model=_model(0.5), train=dict(_REFERENCE_TRAIN), text_backbone="xlnet_base_cased"),
    "mosei": dict(
        model=_model(0.5), train=dict(_REFERENCE_TRAIN), text_backbone="xlnet_base_cased"
    ),
    "sims": dict(
        model=_model(0.1),
        train=dict(
            _REFERENCE_TRAIN,
            batch_size=32,
            lr_xlnet=5e-5,
            lr_main=5e-5,
            weight_decay=0.0,
            patience=8,
        ),
        text_backbone="xlnet_base_zh",
    ),
    "sample": dict(
        model=_model(0.3),
        train=dict(
            _REFERENCE_TRAIN,
            batch_size=32,
            lr_xlnet=1e-3,
            lr_main=1e-3,
            weight_decay=0.0,
            epochs=12,
            patience=6,
        ),
        text_backbone="tiny_xlnet",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_aligned"`)."""
    return lookup(PRESETS, name, method="MAGXLNet")
