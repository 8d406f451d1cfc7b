"""WordPiece vocabularies: the tiny backbone's (a data file) and the fingerprint of bert-base-uncased's.

`tiny_vocabulary()` reads `tiny_vocab.txt`, shipped beside this module as package data (one token per line, in
id order, UTF-8). Its 698 tokens are the BERT special tokens (`[PAD]` = 0, `[UNK]` = 1, `[CLS]` = 2, `[SEP]` = 3,
`[MASK]` = 4), then, sorted, every word of the synthetic `sample` dataset, a few hundred common English words, the
punctuation characters, digits and letters, then the `##` continuation pieces (common suffixes, letters, digits).
So every word of `sample` is one token and any other lower-case ASCII text tokenizes into pieces (at worst
letter by letter) instead of `[UNK]`. The file is frozen: token ids of tiny models and saved tiny presets depend
on it, and `tests/test_backbones.py` pins its SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

TINY_VOCAB_FILE = "tiny_vocab.txt"

# SHA-256 of bert-base-uncased's WordPiece vocabulary ("\n".join of the 30522 tokens in id order), the vocabulary
# of the `bert_ids` that MMSA's MOSI/MOSEI feature files store (all-MiniLM-L6-v2 ships the same vocab.txt:
# 30522 tokens, 231508 bytes; [CLS] = 101, [SEP] = 102, "the" = 1996).
BERT_BASE_UNCASED_VOCAB_SHA256 = "0f052197aac305fe42f378b5c61554b7bacb34b8be4af83fec2cfdcdffbc9973"


@functools.lru_cache(maxsize=1)
def _read_tiny_vocabulary() -> tuple[str, ...]:
    text = (
        importlib.resources.files(__package__).joinpath(TINY_VOCAB_FILE).read_text(encoding="utf-8")
    )
    return tuple(text.rstrip("\n").split("\n"))


def tiny_vocabulary() -> list[str]:
    """The WordPiece vocabulary of the `"tiny"` backbone, in id order (a new list; read from `tiny_vocab.txt`)."""
    return list(_read_tiny_vocabulary())


def vocabulary_fingerprint(tokenizer):
    """SHA-256 of a WordPiece tokenizer's vocabulary in id order (None for tokenizers without a token list)."""
    vocabulary = getattr(tokenizer, "vocabulary", None)
    if not isinstance(vocabulary, (list, tuple)):
        try:
            vocabulary = tokenizer.get_vocabulary()
        except Exception:  # noqa: BLE001 - SentencePiece/BPE tokenizers
            return None
    return hashlib.sha256("\n".join(vocabulary).encode("utf-8")).hexdigest()


def is_bert_base_uncased_vocabulary(tokenizer):
    """Whether `tokenizer` maps text to bert-base-uncased's ids (same vocabulary, lower-casing on).

    This decides whether the `bert_ids` stored in MMSA's MOSI/MOSEI feature files can be used as they are.
    """
    return (
        bool(getattr(tokenizer, "lowercase", False))
        and vocabulary_fingerprint(tokenizer) == BERT_BASE_UNCASED_VOCAB_SHA256
    )
