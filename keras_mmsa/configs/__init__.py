"""Per method x dataset hyper-parameters (the papers' tables)."""

from keras_mmsa.configs import mmim

__all__ = ["mmim"]
