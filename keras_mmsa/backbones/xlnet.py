"""XLNet for keras_mmsa: a SentencePiece `XLNetTokenizer` and the tiny offline XLNet (`"tiny_xlnet"`).

KerasHub 0.32 ships `XLNetBackbone` but no XLNet tokenizer, preset or Hugging Face converter. This module adds

* `XLNetTokenizer`: a KerasHub `SentencePieceTokenizer` with XLNet's special pieces and conventions. XLNet puts
  its specials at the END of a sentence (`pieces <sep> <cls>`, HF's `XLNetTokenizer.build_inputs_with_special_
  tokens`), and gives `<cls>` the segment id 2; the class attributes `specials_at_end = True` and
  `cls_segment_id = 2` tell `keras_mmsa.data.pipeline.tokenize_batch` so (padding stays on the right: the
  summary reads the last REAL token, `<cls>`). Text is normalised as XLNet's tokenizer does for
  `xlnet-base-cased` (cased; ``` `` ``` and `''` become `"`, whitespace collapsed, accents stripped by NFKD);
  HF's extra split of pieces like `"1,"` after a digit is not reproduced. Its `backbone_cls` is
  `keras_hub.models.XLNetBackbone`, so `keras_hub.tokenizers.Tokenizer.from_preset(dir)` finds it for a KerasHub
  preset directory of an XLNet (once `keras_mmsa.backbones` is imported).
* `"tiny_xlnet"`: a small random `XLNetBackbone` (`TINY_XLNET_CONFIG`, deterministic for a seed) with a tiny
  SentencePiece model shipped as package data, `tiny_xlnet.spm`: 800 pieces with XLNet's special-piece ids
  (`<unk>` 0, `<s>` 1, `</s>` 2, `<cls>` 3, `<sep>` 4, `<pad>` 5, `<mask>` 6, `<eod>` 7, `<eop>` 8). It is a
  BPE model (XLNet's own is a unigram model, but at this size unigram pruning splits some `sample` words). It
  was trained by `train_tiny_spm` (the `sentencepiece` package, deterministic) on `tiny_spm_corpus()`: the
  synthetic `sample` dataset's sentences, the words of the tiny BERT vocabulary and the printable ASCII
  characters, so every `sample` word is one piece and other ASCII text tokenizes without `<unk>`. The file is
  frozen (its SHA-256 is pinned in the tests): token ids of tiny XLNet runs depend on it.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import string

import keras
import keras_hub
import numpy as np
import tensorflow as tf

TINY_XLNET = "tiny_xlnet"
TINY_XLNET_SPM_FILE = "tiny_xlnet.spm"

# XLNet's special pieces, in the id order of xlnet-base-cased's SentencePiece model.
XLNET_SPECIAL_PIECES = (
    "<unk>",
    "<s>",
    "</s>",
    "<cls>",
    "<sep>",
    "<pad>",
    "<mask>",
    "<eod>",
    "<eop>",
)

# The tiny XLNet's architecture (fixed so that saved tiny presets and runs are comparable).
TINY_XLNET_CONFIG = dict(
    num_layers=2,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    dropout=0.1,
)


@keras.saving.register_keras_serializable(package="keras_mmsa")
class XLNetTokenizer(keras_hub.tokenizers.SentencePieceTokenizer):
    """XLNet's SentencePiece tokenizer (cased, specials at the end) as a KerasHub tokenizer.

    Tokenizing gives the pieces only; `keras_mmsa.data.pipeline.tokenize_batch` packs them as
    `pieces <sep> <cls>` + right padding (`specials_at_end`), with segment id 0 on the pieces and `<sep>` and
    `cls_segment_id` 2 on `<cls>`, XLNet's single-sentence layout.

    Args:
        proto: a SentencePiece model: a file path or its bytes, with XLNet's special pieces (`<cls>`, `<sep>`,
            `<pad>`, `<mask>`, `<unk>`).
        normalize: XLNet's text normalisation before the SentencePiece model (quotes, whitespace, accents).
        **kwargs: `keras_hub.tokenizers.SentencePieceTokenizer` arguments.

    Example:
    ```python
    tokenizer = keras_mmsa.backbones.tiny_xlnet_tokenizer()
    batch = keras_mmsa.data.pipeline.tokenize_batch(tokenizer, ["the movie was good"], 8)
    # token_ids: [pieces..., <sep>, <cls>, <pad>...], padding_mask True on the pieces, <sep> and <cls>
    ```

    Reference:
        Yang, Dai, Yang, Carbonell, Salakhutdinov, Le. "XLNet: Generalized Autoregressive Pretraining for
        Language Understanding". NeurIPS 2019 (input layout `[A, SEP, B, SEP, CLS]`, §2.6 / App. A).
    """

    backbone_cls = keras_hub.models.XLNetBackbone
    specials_at_end = True
    cls_segment_id = 2

    def __init__(self, proto=None, normalize=True, **kwargs):
        self._add_special_token("<cls>", "cls_token")
        self._add_special_token("<sep>", "sep_token")
        self._add_special_token("<pad>", "pad_token")
        self._add_special_token("<mask>", "mask_token")
        self._add_special_token("<unk>", "unk_token")
        self.normalize = normalize
        super().__init__(proto=proto, **kwargs)

    def tokenize(self, inputs):
        if self.normalize:
            inputs = normalize_xlnet_text(inputs)
        return super().tokenize(inputs)

    def get_config(self):
        config = super().get_config()
        config["normalize"] = self.normalize
        return config


def normalize_xlnet_text(inputs):
    """XLNet's pre-tokenization normalisation of a string tensor (any shape): whitespace runs become one space
    and the ends are stripped, ``` `` ``` and `''` become `"`, and accents are removed (NFKD, then the
    combining marks dropped); the case is kept (xlnet-base-cased)."""
    text = tf.convert_to_tensor(inputs, tf.string)
    text = tf.strings.regex_replace(text, r"\s+", " ")
    text = tf.strings.regex_replace(text, r"^ | $", "")
    text = tf.strings.regex_replace(text, r"``|''", '"')
    import tensorflow_text as tf_text

    text = tf_text.normalize_utf8(text, "NFKD")
    return tf.strings.regex_replace(text, r"\p{Mn}", "")


@functools.lru_cache(maxsize=1)
def tiny_xlnet_proto() -> bytes:
    """The bytes of the shipped tiny SentencePiece model (`tiny_xlnet.spm`)."""
    return importlib.resources.files(__package__).joinpath(TINY_XLNET_SPM_FILE).read_bytes()


def tiny_xlnet_tokenizer():
    """The `XLNetTokenizer` of the `"tiny_xlnet"` backbone (the shipped `tiny_xlnet.spm`)."""
    return XLNetTokenizer(proto=tiny_xlnet_proto())


def tiny_xlnet_backbone(*, seed=0, **overrides):
    """A deterministic tiny random XLNet and its tokenizer: `(XLNetBackbone, XLNetTokenizer)`.

    Args:
        seed: int. Weights are drawn from `numpy.random.default_rng(seed)` (truncated normal, std 0.02, as
            XLNet initialises; zeros for biases and LayerNorm betas, ones for gammas), so the same seed gives the
            same weights whatever Keras's global seed is.
        **overrides: changes to `TINY_XLNET_CONFIG` (e.g. `hidden_dim=8`).
    """
    tokenizer = tiny_xlnet_tokenizer()
    config = dict(TINY_XLNET_CONFIG, **overrides)
    backbone = keras_hub.models.XLNetBackbone(vocabulary_size=tokenizer.vocabulary_size(), **config)
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


# ---------------------------------------------------------------------- how tiny_xlnet.spm was made
TINY_SPM_VOCAB_SIZE = 800


def tiny_spm_corpus():
    """The lines the tiny SentencePiece model was trained on: every sentence of the `sample` dataset's three
    splits (default seed), each word of the tiny BERT vocabulary (also capitalised), every `sample` word 20 more
    times, and the printable ASCII characters."""
    from keras_mmsa_datasets.msa import sample

    from keras_mmsa.backbones.vocabulary import BERT_SPECIAL_TOKENS, tiny_vocabulary

    lines = []
    for split in sample.SPLITS:
        lines += [r["text"] for r in sample.generate_split(split)]
    words = [
        w for w in tiny_vocabulary() if w not in BERT_SPECIAL_TOKENS and not w.startswith("##")
    ]
    lines += words
    lines += [w.capitalize() for w in words if w.isalpha()]
    lines += (
        list(sample.SAMPLE_VOCABULARY) * 20
    )  # weight: rare sample words ("opinion") stay whole pieces
    lines.append(" ".join(string.ascii_letters + string.digits + string.punctuation))
    return lines


def train_tiny_spm(path, *, vocab_size=TINY_SPM_VOCAB_SIZE):
    """Train the tiny SentencePiece model on `tiny_spm_corpus()` and write it to `path` (needs the
    `sentencepiece` package). This is how `tiny_xlnet.spm` was made; it is kept frozen, so running this again
    is only for inspection (another sentencepiece version may give other bytes)."""
    import io
    import tempfile

    import sentencepiece as spm

    model = io.BytesIO()
    # A one-rule normaliser (XLNet's quotes: `` and '' -> "): a small, non-empty character map (an empty one
    # makes sentencepiece log a note at every load; NFKC's map is 240 kB). XLNetTokenizer normalises (NFKD) first.
    rules = tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False)
    with rules:
        rules.write("60 60\t22\n27 27\t22\n")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(tiny_spm_corpus()),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        normalization_rule_tsv=rules.name,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        control_symbols=["<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"],
        split_digits=False,
        num_threads=1,
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    os.unlink(rules.name)
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    proto.normalizer_spec.normalization_rule_tsv = (
        ""  # the temporary file's name: not part of the model
    )
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return path
