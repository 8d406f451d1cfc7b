"""Data for keras_mmsa: the inputs dict (`spec`) and the tf.data pipeline (`load`) over the TFDS builder `msa`.

The builder and its synthetic `sample` generator live in `keras_mmsa_datasets.msa` (`datasets/msa/`), which
imports nothing from `keras_mmsa`; `keras_mmsa.data.sample` remains an alias of the generator's module.

```python
import keras_mmsa as kmsa
ds = kmsa.data.load("sample", "train", batch_size=32)   # (inputs, label) batches, spec.py's inputs dict
info = kmsa.data.dataset_info("mosi_unaligned")          # family, feature dims, padded lengths, aligned
```
"""

from keras_mmsa.data import spec
from keras_mmsa.data.pipeline import (
    DatasetInfo,
    attach_text_features,
    batch_examples,
    compute_text_features,
    dataset_info,
    default_data_dir,
    expand_word_frames,
    get_builder,
    load,
    padded_lengths,
    prepare_builder,
    special_token_ids,
    tokenize_batch,
)
from keras_mmsa.data.spec import MODALITIES, MODALITY_KEYS

__all__ = [
    "MODALITIES",
    "MODALITY_KEYS",
    "DatasetInfo",
    "attach_text_features",
    "batch_examples",
    "compute_text_features",
    "dataset_info",
    "default_data_dir",
    "expand_word_frames",
    "get_builder",
    "load",
    "padded_lengths",
    "prepare_builder",
    "spec",
    "special_token_ids",
    "tokenize_batch",
]
