"""`MAGBERT` (MAG-BERT, Rahman et al. 2020, trained alone) hyper-parameters per dataset.

MOSI / MOSEI / SIMS: the `bert_mag` entry of MMSA's `config/config_regression.json` (THUIAR/MMSA): batch size 32,
`learning_rate` (one Adam over every parameter: here both `lr_bert` and `lr_main`), `weight_decay` 0.0,
`beta_shift` 1, `dropout_prob` (MAG's dropout, here `dropout_mag`), `early_stop` 8 (`patience`), and the
pre-trained BERT (bert-base-uncased; bert-base-chinese for SIMS). MMSA's model injects MAG right after BERT's
embeddings (`injection_index` 0) and its classifier drops out BERT's `hidden_dropout_prob` (0.1,
`dropout_head`). MMSA trains until early stopping with no epoch cap, no gradient clipping and no learning-rate
schedule, so `epochs` is a cap that early stopping reaches first and `lr_patience` is None. The task loss is
the L1 loss, as MMSA's (and `Supervised`'s).

MAG-BERT reads word-aligned audio/vision (`MAGBERT.requires_aligned`): MOSI / MOSEI need their aligned configs
(`mosi_aligned`, `mosei_aligned`). SIMS ships unaligned features only, so its preset (kept as MMSA lists it)
needs word-aligned SIMS features that the toolkit does not provide.

`sample`: the tiny offline BERT (random) on the bundled synthetic set, MOSI's architecture at a learning rate a
random tiny transformer needs (1e-3), 12 epochs. Measured on the sample made word-aligned (each clip's mean
frame on its word tokens, 24 tokens; `tests/test_mag.py`): test MAE 0.47 / r 0.92, against 1.14 / 0.53 for the
text-only ablation and 1.26 for the constant predictor.
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "MODEL_KEYS", "PRESETS", "get_preset"]

_COMMON_TRAIN = dict(
    batch_size=32,
    weight_decay=0.0,
    clipnorm=None,  # MMSA clips no gradient for BERT_MAG
    epochs=100,  # a cap: MMSA stops on patience only
    patience=8,  # MMSA's early_stop
    lr_patience=None,  # MMSA keeps the learning rate constant
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
)


def _model(dropout_mag):
    return dict(injection_index=0, beta_shift=1.0, dropout_mag=dropout_mag, dropout_head=0.1)


def _train(lr, **overrides):
    return dict(_COMMON_TRAIN, lr_bert=lr, lr_main=lr, **overrides)


PRESETS = {
    "mosi": dict(model=_model(0.3), train=_train(2e-5), text_backbone="bert_base_en_uncased"),
    "mosei": dict(model=_model(0.2), train=_train(1e-5), text_backbone="bert_base_en_uncased"),
    "sims": dict(
        model=_model(0.1),
        train=_train(5e-5),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
    "sample": dict(
        model=_model(0.3),
        train=_train(1e-3, epochs=12, patience=6),
        text_backbone="tiny",
    ),
}

MODEL_KEYS = tuple(sorted(PRESETS["mosi"]["model"]))


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_aligned"`)."""
    return lookup(PRESETS, name, method="MAGBERT")
