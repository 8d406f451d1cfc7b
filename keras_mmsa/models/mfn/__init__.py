from keras_mmsa.models.mfn.mfn import MFN

__all__ = ["MFN"]
