from keras_mmsa.models.lmf.lmf import LMF

__all__ = ["LMF"]
