from keras_mmsa.models.tfn.tfn import TFN, PooledSubNet

__all__ = ["TFN", "PooledSubNet"]
