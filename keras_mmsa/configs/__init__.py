"""Per method x dataset hyper-parameters (the papers' tables), as data."""

from keras_mmsa.configs import bert_lstm_mlp, ef_lstm, lmf, mag_bert, mag_xlnet, mfn, mmim, tfn
from keras_mmsa.configs.families import FAMILY_OF

__all__ = [
    "FAMILY_OF",
    "bert_lstm_mlp",
    "ef_lstm",
    "lmf",
    "mag_bert",
    "mag_xlnet",
    "mfn",
    "mmim",
    "tfn",
]
