"""The tiny offline BERT: a small random `BertBackbone` with the `tiny_vocab.txt` WordPiece tokenizer.

The toolkit's default text backbone for tests and the bundled `sample` runs: deterministic for a given seed,
no download, no network, trains in seconds on a CPU.
"""

from __future__ import annotations

import keras_hub
import numpy as np

from keras_mmsa.backbones.vocabulary import tiny_vocabulary

TINY = "tiny"

# The tiny backbone's architecture (fixed so that saved tiny presets and runs are comparable).
TINY_CONFIG = dict(
    num_layers=2,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    dropout=0.1,
    max_sequence_length=512,
)


def tiny_tokenizer(vocabulary=None):
    """The uncased, accent-stripping `BertTokenizer` of the `"tiny"` backbone (default `tiny_vocabulary()`)."""
    vocabulary = list(vocabulary) if vocabulary is not None else tiny_vocabulary()
    return keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True, strip_accents=True)


def tiny_text_backbone(*, seed=0, vocabulary=None, **overrides):
    """A deterministic tiny random BERT and its tokenizer: `(BertBackbone, BertTokenizer)`.

    Args:
        seed: int. Weights are drawn from `numpy.random.default_rng(seed)` (truncated normal, std 0.02, as BERT
            initialises; zeros for biases and LayerNorm betas, ones for gammas), so the same seed gives the same
            weights whatever Keras's global seed is.
        vocabulary: optional list of WordPiece tokens; default `tiny_vocabulary()`.
        **overrides: changes to `TINY_CONFIG` (e.g. `num_layers=1`).
    """
    vocabulary = list(vocabulary) if vocabulary is not None else tiny_vocabulary()
    tokenizer = tiny_tokenizer(vocabulary)
    config = dict(TINY_CONFIG, **overrides)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), **config)
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        if name == "gamma":
            value = np.ones(shape)
        elif name in ("beta", "bias"):
            value = np.zeros(shape)
        else:
            value = np.clip(rng.standard_normal(shape), -2.0, 2.0) * 0.02
        variable.assign(value.astype("float32"))
    return backbone, tokenizer
