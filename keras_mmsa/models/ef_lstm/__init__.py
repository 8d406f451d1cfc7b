from keras_mmsa.models.ef_lstm.ef_lstm import EFLSTM

__all__ = ["EFLSTM"]
