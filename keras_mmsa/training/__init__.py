"""The researcher's workflow: one config object per run, training, evaluation, export, seed sweeps."""

from keras_mmsa.training.config import RunConfig
from keras_mmsa.training.evaluation import evaluate_run, load_run
from keras_mmsa.training.export import export_saved_model
from keras_mmsa.training.registry import METHODS, get_method
from keras_mmsa.training.run import train_and_evaluate
from keras_mmsa.training.seeds import MMSA_SEEDS, run_seeds

__all__ = [
    "METHODS",
    "MMSA_SEEDS",
    "RunConfig",
    "evaluate_run",
    "export_saved_model",
    "get_method",
    "load_run",
    "run_seeds",
    "train_and_evaluate",
]
