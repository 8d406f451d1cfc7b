from keras_mmsa.models.mag_bert.mag_bert import MAGBERT

__all__ = ["MAGBERT"]
