"""The researcher's workflow: one config object per run, training, evaluation, export, seed sweeps.

Names are imported on first use, so the CLIs parse their flags (and answer `--help`) before TensorFlow loads.
"""

import importlib

_EXPORTS = {
    "RunConfig": "config",
    "compare_configs": "compare",
    "evaluate_drops": "evaluation",
    "evaluate_run": "evaluation",
    "load_run": "evaluation",
    "export_saved_model": "export",
    "METHODS": "registry",
    "get_method": "registry",
    "train_and_evaluate": "run",
    "train_in_subprocess": "run",
    "MMSA_SEEDS": "seeds",
    "run_seeds": "seeds",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"keras_mmsa.training.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_mmsa.training' has no attribute {name!r}")
