"""Base models (`MultimodalBackbone`s: encode / fuse / head) and the methods that wrap them.

Base models: `BertLSTMMLP` (MMIM's), `TFN`, `LMF`, and over word-aligned inputs `EFLSTM`, `MFN`, `MAGBERT`,
`MAGXLNet`. Methods (`keras_mmsa.engine.MultiStageModel`s): `Supervised` (a base model alone, task loss only),
`MMIM`, `MDM` (over any base model), `SelfMM` and `SelfMI` (unimodal subtasks on generated labels),
`MIRD` (over its own WSA-BERT encoders).
"""

from keras_mmsa.engine import STAGE_KEY, MultiStageModel, Stage
from keras_mmsa.models.bert_lstm_mlp import BertLSTMMLP
from keras_mmsa.models.ef_lstm import EFLSTM
from keras_mmsa.models.lmf import LMF
from keras_mmsa.models.mag_bert import MAGBERT
from keras_mmsa.models.mag_xlnet import MAGXLNet
from keras_mmsa.models.mdm import MDM
from keras_mmsa.models.mfn import MFN
from keras_mmsa.models.mird import MIRD
from keras_mmsa.models.mmim import MMIM
from keras_mmsa.models.multimodal_backbone import MultimodalBackbone
from keras_mmsa.models.self_mm import SelfMI, SelfMM
from keras_mmsa.models.supervised import Supervised
from keras_mmsa.models.tfn import TFN

__all__ = [
    "EFLSTM",
    "LMF",
    "MFN",
    "MAGBERT",
    "MAGXLNet",
    "MDM",
    "MIRD",
    "MMIM",
    "STAGE_KEY",
    "BertLSTMMLP",
    "MultiStageModel",
    "MultimodalBackbone",
    "SelfMI",
    "SelfMM",
    "Stage",
    "Supervised",
    "TFN",
]
