"""Self-MM and Self-MI hyper-parameters per dataset family (`get_preset(dataset, method="self_mm"|"self_mi")`).

Self-MM: MMSA's `config_regression.json` entry `self_mm` (THUIAR, the authors' own toolkit), per dataset:
batch size, per-group Adam learning rates (BERT 5e-5, audio/vision LSTMs 5e-3 (MOSEI vision 1e-4), the rest
1e-3) and weight decays, LSTM sizes, the subtasks' sizes and dropouts, H. MMSA stops after 8 epochs without
improvement and runs no learning-rate schedule (`lr_patience` None here); its gradient accumulation over
`update_epochs` = 4 batches is not reproduced (one update per batch). Its post-fusion layers are ReLU, so the
base model's fusion uses `fusion_activation="relu"`.

Self-MI (Nguyen et al. 2023, Table 2): batch size, the audio learning rate, the audio/visual embedding sizes and
the text/audio/visual/fusion dropouts are read from the table; its BERT and visual learning rates are garbled in
the text ("59.4", "10.3"), so Self-MM's (MMSA's) are taken, and so are the settings Table 2 does not list (LSTM
hidden sizes, the subtasks' sizes, weight decays, H, stopping). ULG_MI's own settings (not in the paper):
`cpc_weight` 0.1, the label MLP 32 wide, its optimizer Adam at `lr_ulg` 1e-3.

`sample` (the bundled synthetic set, tiny random BERT): MOSI's settings with BERT at 1e-3 (a random tiny BERT
learns nothing at 5e-5 in 12 epochs) and fewer epochs.
"""

import copy

from keras_mmsa.configs.families import lookup

__all__ = ["PRESETS", "get_preset"]


def _base(audio_hidden, vision_hidden, audio_out, vision_out, dropout_fusion):
    return dict(
        audio_hidden=audio_hidden,
        vision_hidden=vision_hidden,
        audio_out=audio_out,
        vision_out=vision_out,
        lstm_layers=1,
        bidirectional=False,
        dropout_audio=0.0,
        dropout_vision=0.0,
        dropout_fusion=dropout_fusion,
        fusion_dim=128,
        standardize=[],
        fusion_activation="relu",
    )


def _subtasks(text, audio, vision, dropouts, bound):
    return dict(
        post_text_dim=text,
        post_audio_dim=audio,
        post_vision_dim=vision,
        post_text_dropout=dropouts[0],
        post_audio_dropout=dropouts[1],
        post_vision_dropout=dropouts[2],
        label_bound=bound,
        label_start_epoch=2,
        exclude_zero=True,
    )


def _train(batch_size, lr_vision=5e-3, weight_decays=(1e-3, 1e-3, 1e-3, 1e-3), lr_audio=5e-3):
    wd = dict(zip(("bert", "audio", "vision", "main"), weight_decays))
    return dict(
        batch_size=batch_size,
        lr_bert=5e-5,
        lr_audio=lr_audio,
        lr_vision=lr_vision,
        lr_main=1e-3,
        **{f"weight_decay_{g}": v for g, v in wd.items()},
        clipnorm=None,
        epochs=40,
        patience=8,
        lr_patience=None,
        lr_factor=0.5,
        log_every=10,
        backup=True,
    )


_SELF_MM = {
    "mosi": dict(
        model=dict(_base(16, 32, 16, 32, 0.0), **_subtasks(32, 16, 32, (0.1, 0.1, 0.0), 3.0)),
        train=_train(16),
        text_backbone="bert_base_en_uncased",
    ),
    "mosei": dict(
        model=dict(_base(16, 32, 16, 32, 0.1), **_subtasks(32, 16, 32, (0.0, 0.0, 0.0), 3.0)),
        train=_train(32, lr_vision=1e-4, weight_decays=(1e-3, 0.0, 0.0, 1e-2)),
        text_backbone="bert_base_en_uncased",
    ),
    "sims": dict(
        model=dict(_base(16, 64, 16, 32, 0.0), **_subtasks(64, 16, 32, (0.1, 0.1, 0.0), 1.0)),
        train=_train(32, weight_decays=(1e-3, 1e-2, 1e-2, 1e-3)),
        # MMSA uses bert-base-chinese; KerasHub has no Chinese BERT preset, so a local preset dir is needed.
        text_backbone="bert_base_zh",
    ),
}
_SELF_MM["sample"] = copy.deepcopy(_SELF_MM["mosi"])
_SELF_MM["sample"]["train"].update(batch_size=32, lr_bert=1e-3, epochs=12, patience=6)
_SELF_MM["sample"]["text_backbone"] = "tiny"

_ULG_MI = dict(
    cpc_weight=0.1, label_input="cpc", label_hidden=32, cpc_hidden_dims=[], label_momentum=True
)

# Table 2 of Self-MI: (batch, audio lr, audio emb, visual emb, text/audio/visual dropout, fusion dropout)
_TABLE_2 = {
    "mosi": (32, 1e-3, 16, 16, (0.0, 0.1, 0.1), 0.1),
    "mosei": (64, 1e-3, 16, 64, (0.1, 0.1, 0.1), 0.1),
    "sims": (32, 5e-3, 16, 16, (0.1, 0.0, 0.0), 0.0),
}
_SELF_MI = {}
for _family, (_batch, _lr_audio, _a_out, _v_out, _drops, _fusion_drop) in _TABLE_2.items():
    _preset = copy.deepcopy(_SELF_MM[_family])
    _preset["model"].update(
        audio_out=_a_out,
        vision_out=_v_out,
        dropout_fusion=_fusion_drop,
        post_text_dropout=_drops[0],
        post_audio_dropout=_drops[1],
        post_vision_dropout=_drops[2],
        **_ULG_MI,
    )
    _preset["train"].update(batch_size=_batch, lr_audio=_lr_audio, lr_ulg=1e-3)
    _SELF_MI[_family] = _preset
_SELF_MI["sample"] = copy.deepcopy(_SELF_MI["mosi"])
_SELF_MI["sample"]["train"].update(lr_bert=1e-3, epochs=12, patience=6)
_SELF_MI["sample"]["text_backbone"] = "tiny"

PRESETS = {"self_mm": _SELF_MM, "self_mi": _SELF_MI}


def get_preset(name, method="self_mm"):
    """A deep copy of `method`'s preset for a dataset family or builder config name (`"mosi"`, `"mosi_sdk"`)."""
    if method not in PRESETS:
        raise ValueError(f"no presets for {method!r}; known: {sorted(PRESETS)}")
    return lookup(PRESETS[method], name, method={"self_mm": "SelfMM", "self_mi": "SelfMI"}[method])
