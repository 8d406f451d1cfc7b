from keras_mmsa.models.tfn.tfn import TFN

__all__ = ["TFN"]
