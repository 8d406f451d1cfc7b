from keras_mmsa.models.mdm.mdm import MDM

__all__ = ["MDM"]
