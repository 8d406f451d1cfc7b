"""Building blocks: sequence encoders with lengths, the BERT text encoder, fusion networks, the MAG gate and the
split BERT/XLNet backbone it is injected into."""

from keras_mmsa.layers.feature_standardizer import FeatureStandardizer
from keras_mmsa.layers.low_rank_fusion import LowRankFusion
from keras_mmsa.layers.memory_fusion import MemoryFusion
from keras_mmsa.layers.mlp_fusion import MLPFusion
from keras_mmsa.layers.multimodal_adaptation_gate import MultimodalAdaptationGate
from keras_mmsa.layers.pooled_sub_net import PooledSubNet
from keras_mmsa.layers.sequence_encoder import SequenceEncoder
from keras_mmsa.layers.sparsemax import Sparsemax
from keras_mmsa.layers.split_text_backbone import SplitTextBackbone
from keras_mmsa.layers.tensor_fusion import TensorFusion
from keras_mmsa.layers.text_encoder import TextEncoder
from keras_mmsa.layers.word_wise_sparse_attention import WordWiseSparseAttention
from keras_mmsa.layers.wsa_text_encoder import WSATextEncoder

__all__ = [
    "FeatureStandardizer",
    "LowRankFusion",
    "MemoryFusion",
    "MLPFusion",
    "MultimodalAdaptationGate",
    "PooledSubNet",
    "SequenceEncoder",
    "Sparsemax",
    "SplitTextBackbone",
    "TensorFusion",
    "TextEncoder",
    "WordWiseSparseAttention",
    "WSATextEncoder",
]
