from keras_mmsa.models.mmim.mmim import MMIM

__all__ = ["MMIM"]
