"""XLNet for MAG-XLNet: the SentencePiece tokenizer (specials at the end), the tiny offline XLNet, and the
KerasHub preset directory round trip."""

import hashlib

import numpy as np
import pytest
from keras_mmsa_datasets.msa import sample

from keras_mmsa import backbones
from keras_mmsa.backbones import xlnet
from keras_mmsa.data import pipeline

# The shipped tiny SentencePiece model is frozen: token ids of tiny XLNet runs and saved presets depend on it.
TINY_XLNET_SPM_SHA256 = "2f2096acf7e099e722f1d4560e2a65cfba9ebfa0cd3478b8ff52aed646d9fd60"


def test_tiny_spm_is_frozen_and_has_xlnet_special_ids():
    assert hashlib.sha256(xlnet.tiny_xlnet_proto()).hexdigest() == TINY_XLNET_SPM_SHA256
    tokenizer = backbones.tiny_xlnet_tokenizer()
    ids = [tokenizer.token_to_id(piece) for piece in xlnet.XLNET_SPECIAL_PIECES]
    assert ids == list(
        range(9)
    )  # xlnet-base-cased's: <unk> 0 ... <cls> 3, <sep> 4, <pad> 5, <mask> 6
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (3, 4, 5)
    # every word of the bundled sample is one piece, and plain ASCII text has no <unk>
    pieces = tokenizer(list(sample.SAMPLE_VOCABULARY))
    assert all(len(p) == 1 for p in pieces)
    assert 0 not in np.concatenate(tokenizer(["Hello, World! 42 {x} ~ #tag"]))


def test_tokenize_batch_puts_xlnet_specials_at_the_end():
    tokenizer = backbones.tiny_xlnet_tokenizer()
    texts = ["i thought the movie was good", "Honestly  it was ``great''", "a b c d e f g h i j"]
    x = {k: np.array(v) for k, v in pipeline.tokenize_batch(tokenizer, texts, 8).items()}
    pieces = tokenizer(texts)
    for i, row in enumerate(pieces):
        n = min(len(row), 6)  # cut to L - 2 pieces
        assert list(x["token_ids"][i, :n]) == list(row[:n])
        assert list(x["token_ids"][i, n : n + 2]) == [
            4,
            3,
        ]  # <sep> <cls>: <cls> is the last real token
        assert (x["token_ids"][i, n + 2 :] == 5).all()  # right padding with <pad>
        assert x["padding_mask"][i].tolist() == [True] * (n + 2) + [False] * (6 - n)
        assert x["segment_ids"][i].tolist() == [0] * (n + 1) + [2] + [0] * (6 - n)
    assert x["padding_mask"][2].all()  # a cut sentence still ends in <sep> <cls>
    # XLNet's normalisation: quotes, whitespace runs, accents; cased
    assert tokenizer.detokenize(tokenizer(["Honestly  it was ``great'' café"])[0]) == (
        'Honestly it was "great" cafe'
    )
    # BERT tokenizers keep [CLS] pieces [SEP]
    bert = backbones.tiny_tokenizer()
    ids = np.array(pipeline.tokenize_batch(bert, ["good"], 4)["token_ids"])[0]
    assert ids[0] == bert.cls_token_id and ids[2] == bert.sep_token_id


def test_tiny_xlnet_is_deterministic_and_saves_to_a_loadable_preset_dir(tmp_path):
    backbone, tokenizer = backbones.load_text_backbone("tiny_xlnet", seed=3)
    again, _ = xlnet.tiny_xlnet_backbone(seed=3)
    assert type(backbone).__name__ == "XLNetBackbone" and backbone.num_layers == 2
    for a, b in zip(backbone.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    # a KerasHub preset directory (what a user with a real XLNet has): save, then load by path
    path = backbones.save_tiny_preset(tmp_path / "xlnet", seed=3, name="tiny_xlnet")
    names = {p.name for p in (tmp_path / "xlnet").iterdir()}
    assert {"config.json", "metadata.json", "model.weights.h5", "tokenizer.json"} <= names
    assert (tmp_path / "xlnet" / "assets" / "tokenizer" / "vocabulary.spm").exists()
    loaded, loaded_tokenizer = backbones.load_text_backbone(path)
    assert isinstance(loaded_tokenizer, backbones.XLNetTokenizer)
    assert isinstance(backbones.load_text_tokenizer(path), backbones.XLNetTokenizer)
    x = {
        k: np.array(v) for k, v in pipeline.tokenize_batch(loaded_tokenizer, ["so good"], 6).items()
    }
    x["padding_mask"] = x["padding_mask"].astype("int32")
    np.testing.assert_allclose(np.array(loaded(x)), np.array(backbone(x)), atol=1e-6)


def test_xlnet_preset_names_fail_fast_with_the_way_out():
    with pytest.raises(ValueError, match="no XLNet presets.*local KerasHub preset directory"):
        backbones.load_text_backbone("xlnet_base_cased")
    with pytest.raises(ValueError, match="must be one of"):
        backbones.save_tiny_preset("unused", name="small")


@pytest.mark.large
def test_train_tiny_spm_reproduces_the_shipped_model(tmp_path):
    """How `tiny_xlnet.spm` was made (sentencepiece 0.2.x; another version may give other bytes)."""
    pytest.importorskip("sentencepiece")
    path = xlnet.train_tiny_spm(tmp_path / "tiny.spm")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TINY_XLNET_SPM_SHA256
