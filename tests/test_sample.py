"""The synthetic `sample` set: determinism, shapes, vocabulary, and the planted multimodal signal."""

import numpy as np
import pytest
from keras_mmsa_datasets.msa import sample


@pytest.fixture(scope="module")
def splits():
    return {s: sample.generate_split(s) for s in sample.SPLITS}


def test_old_name_keras_mmsa_data_sample_is_the_same_module():
    import keras_mmsa.data.sample as old
    from keras_mmsa.data import sample as attribute

    assert old is attribute is sample
    assert old.generate_split is sample.generate_split


def test_deterministic_per_seed_and_split():
    a = sample.generate_split("validation", num_examples=20, seed=3)
    b = sample.generate_split("validation", num_examples=20, seed=3)
    c = sample.generate_split("validation", num_examples=20, seed=4)
    d = sample.generate_split("test", num_examples=20, seed=3)
    for x, y in zip(a, b):
        assert x["id"] == y["id"] and x["text"] == y["text"] and x["label"] == y["label"]
        np.testing.assert_array_equal(x["audio"], y["audio"])
        np.testing.assert_array_equal(x["vision"], y["vision"])
    assert [x["text"] for x in a] != [x["text"] for x in c]
    assert not np.array_equal(a[0]["audio"][:10], d[0]["audio"][:10])


def test_shapes_dtypes_and_sizes(splits):
    assert {s: len(r) for s, r in splits.items()} == sample.SPLIT_SIZES
    ids = [r["id"] for records in splits.values() for r in records]
    assert len(set(ids)) == len(ids)  # unique across splits: speakers differ between splits
    for records in splits.values():
        t_a = np.array([r["audio"].shape[0] for r in records])
        t_v = np.array([r["vision"].shape[0] for r in records])
        assert t_a.min() >= 1 and t_a.max() <= sample.AUDIO_LEN and len(set(t_a)) > 50
        assert t_v.min() >= 1 and t_v.max() <= sample.VISION_LEN and len(set(t_v)) > 50
        for r in records:
            assert r["audio"].dtype == np.float32 and r["audio"].shape[1] == sample.AUDIO_DIM
            assert r["vision"].dtype == np.float32 and r["vision"].shape[1] == sample.VISION_DIM
            assert isinstance(r["label"], np.float32) and abs(r["label"]) <= sample.LABEL_RANGE
            assert isinstance(r["text"], str) and isinstance(r["id"], str)


def test_labels_have_exact_zeros_and_spread(splits):
    labels = np.array([r["label"] for r in splits["train"]])
    assert 0.01 < np.mean(labels == 0) < 0.2
    assert labels.std() > 1.0 and labels.min() < -2 and labels.max() > 2
    np.testing.assert_allclose(labels * 5, np.round(labels * 5), atol=1e-4)  # MOSI-like 0.2 grid


def test_text_uses_the_vocabulary_and_fits_50_tokens():
    records = sample.generate_split("train", num_examples=1000, seed=11)
    used = {w for r in records for w in r["text"].split()}
    assert used == set(sample.SAMPLE_VOCABULARY)  # every word is covered, no stale entry
    assert max(len(r["text"].split()) for r in records) <= sample.TEXT_LEN - 2  # + [CLS], [SEP]
    assert all(r["text"] == r["text"].lower().strip() for r in records)


def test_text_score_parses_negation_and_intensifiers():
    gain = sample.INTENSIFIER_GAIN
    assert sample.text_score("honestly the movie was good") == 1.0
    assert sample.text_score("the film was not really good") == 1.0 * sample.NEGATION_GAIN * gain
    assert sample.text_score("i thought the jokes were very dull") == -1.0 * gain
    assert sample.text_score("the acting was not awful") == -2.0 * sample.NEGATION_GAIN
    assert sample.text_score("it runs about two hours and the ending was long") == 0.0


def test_modalities_disagree_and_lengths_do_not_leak(splits):
    records = splits["train"]
    labels = np.array([r["label"] for r in records])
    text = np.array([sample.text_score(r["text"]) for r in records])
    nonzero = (text != 0) & (labels != 0)
    assert np.mean(np.sign(text[nonzero]) != np.sign(labels[nonzero])) > 0.1
    for key in ("audio", "vision"):
        lengths = np.array([r[key].shape[0] for r in records])
        assert abs(np.corrcoef(lengths, labels)[0, 1]) < 0.15


def test_all_three_modalities_beat_any_single_one(splits):
    """Ridge regression on hand features (train -> test): the planted signal needs every modality."""
    scores = sample.oracle_scores(train=splits["train"], test=splits["test"])
    singles = [scores[m] for m in ("text", "audio", "vision")]
    for s in singles:  # each modality carries signal on its own ...
        assert s["mae"] < scores["constant"]["mae"] - 0.1 and s["corr"] > 0.3
    # ... and using all three is far better than the best single one.
    assert scores["all"]["mae"] < min(s["mae"] for s in singles) - 0.4
    assert scores["all"]["corr"] > max(s["corr"] for s in singles) + 0.2


def test_signal_is_spread_over_the_valid_frames(splits):
    """The audio cue is an offset over all valid frames, not a spike: any half of the frames carries it."""
    records = splits["train"]
    labels = np.array([r["label"] for r in records])
    first = np.array([r["audio"][: len(r["audio"]) // 2, 0].mean() for r in records])
    second = np.array([r["audio"][len(r["audio"]) // 2 :, 0].mean() for r in records])
    assert np.corrcoef(first, labels)[0, 1] > 0.25 and np.corrcoef(second, labels)[0, 1] > 0.25


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown sample split"):
        sample.generate_split("valid")
    with pytest.raises(ValueError, match="num_examples"):
        sample.generate_split("train", num_examples=-1)
    with pytest.raises(ValueError, match="modality"):
        sample.hand_features([], "video")


def test_word_aligned_split_keeps_the_clips_and_the_planted_offsets(splits):
    aligned = sample.generate_split("test", aligned=True)
    for plain, word in zip(splits["test"], aligned):
        assert (word["id"], word["text"], word["label"]) == (
            plain["id"],
            plain["text"],
            plain["label"],
        )
        words = len(word["text"].split())
        assert (
            word["audio"].shape == (words, sample.AUDIO_DIM) and word["audio"].dtype == np.float32
        )
        assert word["vision"].shape == (words, sample.VISION_DIM)
    # the first word's row is the mean of the frames in the first 1/W of the clip
    first = splits["test"][0]
    steps, words = len(first["audio"]), len(first["text"].split())
    inside = np.arange(steps) / steps < 1 / words - 1e-4
    np.testing.assert_allclose(aligned[0]["audio"][0], first["audio"][inside].mean(0), rtol=1e-5)
    # the offsets that carry the label lie on every word's row: per-clip means barely move
    offsets = np.array([r["audio"][:, 0].mean() for r in aligned])
    frames = np.array([r["audio"][:, 0].mean() for r in splits["test"]])
    assert np.corrcoef(offsets, frames)[0, 1] > 0.95


def test_planted_unimodal_labels_are_each_modalitys_own_term(splits):
    records = splits["train"]
    for r in records[:50]:
        expected = (
            np.round(np.clip(sample.TEXT_WEIGHT * sample.text_score(r["text"]), -3, 3) * 5) / 5
        )
        assert r["label_T"] == pytest.approx(expected, abs=1e-6)
    audio = np.array([r["label_A"] for r in records])
    offset = sample.hand_features(records, "audio")[
        :, 0
    ]  # channel 0 carries z_audio over the frames
    assert np.corrcoef(audio, offset)[0, 1] > 0.9
    vision = np.array([r["label_V"] for r in records])
    assert np.corrcoef(vision, sample.hand_features(records, "vision")[:, 0])[0, 1] > 0.9
    y = np.array([r["label"] for r in records])
    for key in ("label_T", "label_A", "label_V"):
        values = np.array([r[key] for r in records])
        assert values.dtype == np.float32 and np.abs(values).max() <= sample.LABEL_RANGE
        assert (
            0.2 < np.corrcoef(values, y)[0, 1] < 0.9
        )  # each carries part of the label, none all of it
