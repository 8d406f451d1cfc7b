"""keras_mmsa: mutual-information-based multimodal sentiment analysis in Keras 3."""

__version__ = "0.1.0"
