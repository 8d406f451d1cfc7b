"""TFDS dataset builders of keras_mmsa, installed as the package `keras_mmsa_datasets`."""
