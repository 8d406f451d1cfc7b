from keras_mmsa.models.mag_xlnet.mag_xlnet import MAGXLNet

__all__ = ["MAGXLNet"]
