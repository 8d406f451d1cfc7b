"""MIRD hyper-parameters per dataset (Qian et al., §4.3, §5.7).

Paper values: batch size 32, 100 epochs, d = 64 (`latent_dim`), T' = 5 CLUB updates per model update
(`club_steps`), CLUB networks "two-layer FC with hidden 32" (`club_hidden`) under Adam at 1e-3 (`lr_club`),
AdamW at 1e-5 for "the encoders, decoders and the regressor" (`lr_bert`, `lr_main`), MAG's ε = 1
(`wsa_epsilon`), α = 0.1 on MOSI and 1 on MOSEI (§5.7, Fig. 7), text reconstructed by cross entropy over the
vocabulary (eq. 19, `text_reconstruction="tokens"`). The paper selects models on the validation split (its
official code evaluates on the test split; the workflow here never does).

Not in the paper, chosen here: β = 1 (eq. 21 has no weight on L_recon), the BERT group's linear warm-up over
the first `warmup_proportion` = 10% of the steps then linear decay to 0 (`LinearWarmup`; the issue notes the
official code's schedule, whose arguments it swaps), AdamW weight decay 0.01 on BERT only, the rest under plain
Adam (`lr_main`), the sizes of the encoders' LSTMs (`text_hidden` 64, `audio_hidden`/`vision_hidden` 32), the
decoders' (64), the regressor's hidden layer (64) and its dropout (0.1), the middle BERT layer for the injection
(`split_index=None`), early stopping after 10 epochs without a better validation MAE (`patience`). SIMS (not in
the paper): MOSI's settings with a Chinese BERT.

`sample`: the tiny offline BERT on the bundled synthetic set, learning rates a random tiny model needs (1e-3),
8 epochs, so that `scripts/train.py --method mird` runs offline in minutes.

`model` holds `MIRD` constructor arguments; `train` the optimisation settings (`MIRD.optimizers_from_settings`
and the workflow's).
"""

from keras_mmsa.configs.families import FAMILY_OF, lookup

__all__ = ["FAMILY_OF", "PRESETS", "get_preset"]

_MODEL = dict(
    split_index=None,
    attention_dim=32,
    wsa_epsilon=1.0,
    wsa_layer_norm=False,
    latent_dim=64,
    text_hidden=64,
    audio_hidden=32,
    vision_hidden=32,
    decoder_hidden=64,
    regressor_hidden=64,
    dropout=0.1,
    club_hidden=32,
    club_logvar_bound=1.0,  # q's |log sigma^2| <= 1, the CLUB reference networks' Tanh
    club_steps=5,
    alpha=0.1,
    beta=1.0,
    use_club=True,
    use_input_club=True,
    use_reconstruction=True,
    text_reconstruction="tokens",
    standardize=[],  # e.g. ["audio"] for mosi_sdk's raw per-clip COVAREP vector (see MIRD)
)

_TRAIN = dict(
    batch_size=32,
    epochs=100,
    lr_bert=1e-5,
    lr_main=1e-5,
    lr_club=1e-3,
    weight_decay=0.01,
    warmup_proportion=0.1,
    clipnorm=None,
    patience=10,
    lr_patience=None,  # the BERT group follows its warm-up schedule; no plateau decay
    lr_factor=0.5,
    log_every=10,  # TensorBoard per-step curves: one point every `log_every` steps
    backup=True,
    club_probe=False,  # `keras_mmsa.models.mird.probe.CLUBProbe` after every epoch (probe_* logs)
)

PRESETS = {
    "mosi": dict(model=dict(_MODEL), train=dict(_TRAIN), text_backbone="bert_base_en_uncased"),
    "mosei": dict(
        model=dict(_MODEL, alpha=1.0), train=dict(_TRAIN), text_backbone="bert_base_en_uncased"
    ),
    # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
    "sims": dict(model=dict(_MODEL), train=dict(_TRAIN), text_backbone="bert_base_zh"),
    "sample": dict(
        model=dict(_MODEL),
        train=dict(_TRAIN, epochs=8, lr_bert=1e-3, lr_main=1e-3, patience=4),
        text_backbone="tiny",
    ),
}


def get_preset(name):
    """A deep copy of the preset of a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    return lookup(PRESETS, name, method="MIRD")
