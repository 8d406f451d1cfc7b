"""The method registry: `--method` name -> class. Adding a method to the workflow adds one entry to `METHODS`.

Each class implements the workflow protocol (`keras_mmsa.engine.multi_stage_model`): `preset(dataset)`,
`model_keys()`, `from_run_config(config, info, text_backbone)` (a built model), `optimizers_from_settings(
train)`; the built model states its schedule (`stage_schedule()`), the groups its plateau schedule decays
(`lr_decay_groups()`) and fits its data-dependent state (`adapt(batches)`). A base model
(`MultimodalBackbone`) registered here trains alone (task loss only, `keras_mmsa.models.Supervised`).
"""

from __future__ import annotations

import importlib

# name -> "module:Class", imported on first use (the CLIs answer --help before TensorFlow loads).
_CLASSES = {
    "mmim": "keras_mmsa.models.mmim:MMIM",
    "bert_lstm_mlp": "keras_mmsa.models.bert_lstm_mlp:BertLSTMMLP",
    "tfn": "keras_mmsa.models.tfn:TFN",
    "lmf": "keras_mmsa.models.lmf:LMF",
    "ef_lstm": "keras_mmsa.models.ef_lstm:EFLSTM",
    "mfn": "keras_mmsa.models.mfn:MFN",
    "mag_bert": "keras_mmsa.models.mag_bert:MAGBERT",
    "mag_xlnet": "keras_mmsa.models.mag_xlnet:MAGXLNet",
    "mdm": "keras_mmsa.models.mdm:MDM",
    "self_mm": "keras_mmsa.models.self_mm:SelfMM",
    "self_mi": "keras_mmsa.models.self_mm:SelfMI",
    "mird": "keras_mmsa.models.mird:MIRD",
}
METHODS = tuple(_CLASSES)


def get_method(name):
    """The class registered as `name`; a ValueError naming the known methods otherwise."""
    key = str(name).lower()
    if key not in _CLASSES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    module, cls = _CLASSES[key].split(":")
    return getattr(importlib.import_module(module), cls)
