from keras_mmsa.models.bert_lstm_mlp.bert_lstm_mlp import BertLSTMMLP

__all__ = ["BertLSTMMLP"]
