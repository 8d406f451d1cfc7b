"""The msa builder's readers on the dummy files: content, error paths, manual-dir handling, offline build."""

import ast
import copy
import csv
import json
import pathlib
import pickle
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from keras_mmsa_datasets.msa import make_dummy_data as dummy
from keras_mmsa_datasets.msa import msa_dataset_builder as mdb
from keras_mmsa_datasets.msa import readers
from keras_mmsa_datasets.msa.readers import MsaDataError
from tensorflow_datasets.core.utils import gcs_utils

DUMMY = dummy.DUMMY_DIR


def _examples(gen):
    return [example for _, example in gen]


def _pickle(family="MOSI", file="unaligned_50.pkl"):
    return readers.load_pickle(DUMMY / family / "Processed" / file)


def _read(
    data, *, split="train", aligned=False, dims=(5, 20), bert_ids=True, sims=False, path="x.pkl"
):
    return _examples(
        readers.pickle_examples(
            data,
            path=path,
            file_split=split,
            aligned=aligned,
            audio_dim=dims[0],
            vision_dim=dims[1],
            bert_ids=bert_ids,
            unimodal_labels=sims,
            label_range=1.0 if sims else 3.0,
        )
    )


# --------------------------------------------------------------------------------------------------------
# MMSA pickles: content


def test_unaligned_pickle_trims_to_lengths_and_zeroes_minus_inf():
    data = _pickle()
    src = data["train"]
    examples = _read(data)
    assert len(examples) == len(src["regression_labels"])
    assert np.isneginf(src["audio"][0, 0, 0])  # the dummy file carries MMSA's -inf
    for i, ex in enumerate(examples):
        assert ex["id"] == src["id"][i] and ex["text"] == src["raw_text"][i]
        assert ex["label"] == np.float32(src["regression_labels"][i])
        expected_audio = np.where(np.isneginf(src["audio"][i]), 0, src["audio"][i])[
            : src["audio_lengths"][i]
        ]
        np.testing.assert_array_equal(ex["audio"], expected_audio)
        np.testing.assert_array_equal(ex["vision"], src["vision"][i, : src["vision_lengths"][i]])
        mask = int(src["text_bert"][i, 1].sum())
        np.testing.assert_array_equal(
            ex["bert_ids"], src["text_bert"][i, 0, :mask].astype(np.int32)
        )
        assert ex["bert_ids"].dtype == np.int32 and ex["audio"].dtype == np.float32
        assert ex["bert_ids"][0] == 101 and ex["bert_ids"][-1] == 102
    assert np.isfinite(examples[0]["audio"]).all()


def test_aligned_pickle_cuts_features_to_the_text_mask():
    examples = _read(_pickle(file="aligned_50.pkl"), aligned=True)
    lengths = [len(ex["bert_ids"]) for ex in examples]
    assert len(set(lengths)) > 1  # variable lengths, so the check below can fail
    for ex in examples:
        assert ex["audio"].shape == (len(ex["bert_ids"]), 5)
        assert ex["vision"].shape == (len(ex["bert_ids"]), 20)


def test_sims_pickle_keeps_unimodal_labels():
    data = _pickle("SIMS", "unaligned_39.pkl")
    examples = _read(data, split="test", dims=(33, 709), sims=True)
    for i, ex in enumerate(examples):
        for m in "TAV":
            assert ex[f"label_{m}"] == np.float32(data["test"][f"regression_labels_{m}"][i])


def test_zero_length_becomes_one_zero_frame():
    data = copy.deepcopy(_pickle())
    data["train"]["audio_lengths"][1] = 0
    ex = _read(data)[1]
    np.testing.assert_array_equal(ex["audio"], np.zeros((1, 5), np.float32))


def test_nan_in_padding_is_ignored_but_nan_in_valid_frames_is_an_error():
    data = copy.deepcopy(_pickle())
    split = data["train"]
    i = int(np.argmin(split["vision_lengths"]))
    assert split["vision_lengths"][i] < split["vision"].shape[1]
    split["vision"][i, -1, 0] = np.nan  # padding: trimmed away
    _read(data)
    split["vision"][i, 0, 3] = np.nan
    with pytest.raises(MsaDataError) as e:
        _read(data, path="/data/MOSI/unaligned_50.pkl")
    msg = str(e.value)
    for part in (
        "/data/MOSI/unaligned_50.pkl",
        "split 'train'",
        "'vision'",
        "(T, 20)",
        "nan",
        split["id"][i],
    ):
        assert part in msg


# --------------------------------------------------------------------------------------------------------
# MMSA pickles: errors name file, split, key and expected shape


def _broken(mutate, **kw):
    data = copy.deepcopy(_pickle())
    mutate(data["valid"])
    with pytest.raises(MsaDataError) as e:
        _read(data, split="valid", path="/m/unaligned_50.pkl", **kw)
    assert "/m/unaligned_50.pkl" in str(e.value) and "split 'valid'" in str(e.value)
    return str(e.value)


def test_wrong_feature_dim():
    msg = _broken(lambda s: s.update(audio=s["audio"][..., :4]))
    assert "'audio'" in msg and "(N, T_a, 5)" in msg and "(2, 12, 4)" in msg


def test_wrong_ndim():
    msg = _broken(lambda s: s.update(vision=s["vision"][:, :, 0]))
    assert "'vision'" in msg and "(N, T_v, 20)" in msg


def test_mismatched_example_counts():
    msg = _broken(lambda s: s.update(raw_text=s["raw_text"][:1]))
    assert "'raw_text'" in msg and "N=2" in msg


def test_missing_key():
    msg = _broken(lambda s: s.pop("vision_lengths"))
    assert "'vision_lengths'" in msg and "expected" in msg


def test_length_longer_than_padding():
    msg = _broken(lambda s: s["audio_lengths"].__setitem__(0, 99))
    assert "'audio_lengths'" in msg and "[0, 12]" in msg


def test_label_out_of_range_or_nan():
    assert "[-3, 3]" in _broken(lambda s: s["regression_labels"].__setitem__(0, 4.5))
    assert "regression_labels" in _broken(lambda s: s["regression_labels"].__setitem__(1, np.nan))


def test_missing_text_bert_when_bert_ids_are_expected():
    msg = _broken(lambda s: s.pop("text_bert"))
    assert "'text_bert'" in msg and "(N, 3, L)" in msg
    data = copy.deepcopy(_pickle())
    data["train"].pop("text_bert")
    assert "bert_ids" not in _read(data, bert_ids=False)[0]


def test_sims_without_unimodal_labels():
    data = copy.deepcopy(_pickle("SIMS", "unaligned_39.pkl"))
    data["train"].pop("regression_labels_A")
    with pytest.raises(MsaDataError, match="regression_labels_A"):
        _read(data, dims=(33, 709), sims=True)


def test_aligned_length_mismatch():
    data = copy.deepcopy(_pickle(file="aligned_50.pkl"))
    data["test"]["audio"] = data["test"]["audio"][:, :5]
    with pytest.raises(MsaDataError, match=r"one frame per text token.*\(N, 8, 5\)"):
        _read(data, split="test", aligned=True)


def test_not_an_mmsa_pickle(tmp_path):
    path = epath.Path(tmp_path) / "bad.pkl"
    path.write_bytes(pickle.dumps({"train": {}}))
    with pytest.raises(MsaDataError, match=r"bad\.pkl.*\['train', 'valid', 'test'\]"):
        readers.load_pickle(path)


@pytest.mark.parametrize("content", [b"this is not a pickle", pickle.dumps({"train": {}})[:10]])
def test_corrupt_or_truncated_pickle_names_the_file(tmp_path, content):
    path = epath.Path(tmp_path) / "unaligned_50.pkl"
    path.write_bytes(content)
    with pytest.raises(
        MsaDataError, match=r"unaligned_50\.pkl: not a readable MMSA feature pickle"
    ):
        readers.load_pickle(path)


# --------------------------------------------------------------------------------------------------------
# CMU-MultimodalSDK files


def _sdk(family="MOSI", **kw):
    cfg = mdb.get_config(f"{family.lower()}_sdk")
    root = DUMMY / family
    sequences = kw.pop("sequences", {})
    args = dict(
        labels_path=root / cfg.labels_csd,
        words_path=root / cfg.words_csd,
        folds_path=root / cfg.folds_json,
        sequences=sequences,
        label_column=0,
        word_interval_shift=cfg.word_interval_shift,
        fix_nonfinite=False,
        label_range=3.0,
    )
    args.update(kw)
    return {split: dict(pairs) for split, pairs in readers.sdk_examples(**args).items()}


def _expected_sdk():
    folds = {"train": ["vid_a", "vid_b"], "validation": ["vid_c"], "test": ["vid_d"]}
    return {
        split: {
            f"{v}_{k + 1}": (" ".join(words), label)
            for v in videos
            for k, (words, label) in enumerate(dummy.SDK_VIDEOS[v])
        }
        for split, videos in folds.items()
    }


@pytest.mark.parametrize("family", ["MOSI", "MOSEI"])
def test_sdk_segments_text_labels_and_folds(family):
    # MOSI's dummy words file has the one-row interval shift of the real modified file, MOSEI's has none.
    got = _sdk(family)
    for split, expected in _expected_sdk().items():
        assert sorted(got[split]) == sorted(expected)
        for clip_id, (text, label) in expected.items():
            assert got[split][clip_id]["text"] == text
            assert got[split][clip_id]["label"] == np.float32(label)
    assert not any("vid_extra" in k for split in got.values() for k in split)


def test_sdk_word_shift_matters():
    got = _sdk("MOSI", word_interval_shift=0)
    expected = _expected_sdk()["train"]
    assert sum(got["train"][k]["text"] == t for k, (t, _) in expected.items()) < len(expected) / 2


def test_sdk_utterance_sequence_gives_each_segment_its_row():
    path = DUMMY / "MOSI" / "CMU_MOSI_bcLSTM_Utterance_Audio.csd"
    csd = readers.read_csd(path)
    got = _sdk("MOSI", sequences={"audio": (path, 73)})
    for split in got.values():
        for clip_id, ex in split.items():
            video, k = clip_id.rsplit("_", 1)
            np.testing.assert_array_equal(ex["audio"], csd[video][0][int(k) - 1 : int(k)])


def test_sdk_frame_sequences_are_cut_by_overlap():
    covarep = DUMMY / "MOSI" / "CMU_MOSI_COVAREP.csd"
    facet = DUMMY / "MOSI" / "CMU_MOSI_Visual_Facet_41.csd"
    got = _sdk("MOSI", sequences={"audio": (covarep, 74), "vision": (facet, 35)})
    frames = readers.read_csd(covarep)
    for video in ("vid_a", "vid_d"):
        values, intervals = frames[video]
        _, segments = dummy.sdk_timeline(video)
        for k, (start, end) in enumerate(segments):
            ex = got["train" if video == "vid_a" else "test"][f"{video}_{k + 1}"]
            inside = (intervals[:, 0] < end - 1e-4) & (intervals[:, 1] > start + 1e-4)
            expected = np.where(np.isneginf(values[inside]), 0, values[inside])
            np.testing.assert_array_equal(ex["audio"], expected)
            assert ex["audio"].shape[0] >= round((end - start) * dummy.COVAREP_RATE)
            assert ex["vision"].shape[1] == 35 and ex["vision"].shape[0] >= 1
    assert np.isneginf(frames["vid_a"][0]).any()


def test_sdk_wrong_feature_dim_names_file_video_and_shape():
    path = DUMMY / "MOSI" / "CMU_MOSI_COVAREP.csd"
    with pytest.raises(MsaDataError) as e:
        _sdk("MOSI", sequences={"audio": (path, 73)})
    assert (
        "CMU_MOSI_COVAREP.csd" in str(e.value)
        and "(n, 73)" in str(e.value)
        and "vid_a" in str(e.value)
    )


def test_sdk_nonfinite_features(tmp_path):
    import h5py

    src = DUMMY / "MOSI" / "CMU_MOSI_Visual_Facet_41.csd"
    bad = epath.Path(tmp_path) / "facet.csd"
    bad.write_bytes(src.read_bytes())
    with h5py.File(str(bad), "r+") as h5:
        start, end = dummy.sdk_timeline("vid_b")[1][0]  # a frame inside segment 1 of vid_b
        frame = int(np.flatnonzero(h5["FACET 4.1/data/vid_b/intervals"][:, 0] >= start)[0])
        h5["FACET 4.1/data/vid_b/features"][frame, 2] = np.nan
    with pytest.raises(MsaDataError, match=r"facet\.csd: video 'vid_b', segment 1.*'vision'.*nan"):
        _sdk("MOSI", sequences={"vision": (bad, 35)})
    got = _sdk("MOSI", sequences={"vision": (bad, 35)}, fix_nonfinite=True)
    assert np.isfinite(got["train"]["vid_b_1"]["vision"]).all()


def test_sdk_folds_errors(tmp_path):
    folds = dict(dummy.SDK_FOLDS)
    path = epath.Path(tmp_path) / "folds.json"
    path.write_text(json.dumps({**folds, "standard_test_fold": ["vid_a"]}))
    with pytest.raises(MsaDataError, match="vid_a.*both"):
        readers.read_folds(path)
    path.write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(MsaDataError, match="valid"):
        readers.read_folds(path)


def test_sdk_missing_words_for_a_video(tmp_path):
    import h5py

    words = epath.Path(tmp_path) / "words.csd"
    words.write_bytes((DUMMY / "MOSI" / "CMU_MOSI_ModifiedTimestampedWords.csd").read_bytes())
    with h5py.File(str(words), "r+") as h5:
        del h5["CMU_MOSI_ModifiedTimestampedWords/data/vid_c"]
    with pytest.raises(MsaDataError, match="words.csd: no words for video 'vid_c'"):
        _sdk("MOSI", words_path=words)


def test_csd_layout_error(tmp_path):
    import h5py

    path = epath.Path(tmp_path) / "flat.csd"
    with h5py.File(str(path), "w") as h5:
        h5.create_dataset("features", data=np.zeros((2, 2)))
    with pytest.raises(MsaDataError, match="flat.csd: expected exactly one root group"):
        readers.read_csd(path)


# --------------------------------------------------------------------------------------------------------
# Word alignment (SDK `align="words"`, `sample_aligned`)


def test_align_to_words_averages_overlapping_frames_and_falls_back_to_the_nearest():
    frames = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 40.0]], np.float32)
    intervals = np.array([[0.0, 0.6], [0.6, 1.4], [1.4, 2.0]])
    words = np.array([[0.0, 1.0], [1.0, 2.0], [0.3, 0.3], [2.5, 3.0]])
    got = readers.align_to_words(frames, intervals, words)
    # word 1 overlaps frames 0 and 1, word 2 frames 1 and 2 (frame boundaries touching a word do not count);
    # the zero-length word at 0.3 s lies in frame 0; the word after the last frame takes the nearest, frame 2.
    expected = [[2.0, 15.0], [4.0, 30.0], [1.0, 10.0], [5.0, 40.0]]
    np.testing.assert_array_equal(got, np.array(expected, np.float32))
    assert got.dtype == np.float32


def test_sdk_words_alignment_repeats_the_per_segment_vector():
    path = DUMMY / "MOSI" / "CMU_MOSI_bcLSTM_Utterance_Audio.csd"
    csd = readers.read_csd(path)
    got = _sdk("MOSI", sequences={"audio": (path, 73)}, align="words")
    plain = _sdk("MOSI", sequences={"audio": (path, 73)})
    for split in got:
        for clip_id, ex in got[split].items():
            assert ex["text"] == plain[split][clip_id]["text"]
            video, k = clip_id.rsplit("_", 1)
            words = len(ex["text"].split())
            assert words >= 1
            np.testing.assert_array_equal(
                ex["audio"], np.repeat(csd[video][0][int(k) - 1 : int(k)], words, axis=0)
            )


def test_sdk_words_alignment_of_frame_sequences():
    covarep = DUMMY / "MOSI" / "CMU_MOSI_COVAREP.csd"
    got = _sdk("MOSI", sequences={"audio": (covarep, 74)}, align="words")["train"]["vid_a_1"]
    values, intervals = readers.read_csd(covarep)["vid_a"]
    values = np.where(np.isneginf(values), 0, values)
    timeline, _ = dummy.sdk_timeline("vid_a")
    # The MOSI words file is shifted: its first word gets the zero-length interval at the start of the
    # (stored) first interval, which is the true start of word 2; the others their true intervals.
    (_, s0, _), (_, s1, _) = timeline[:2]
    spans = [(s1, s1)] + [(s, e) for _, s, e in timeline[1:4]]
    assert got["audio"].shape == (4, 74)
    for row, (start, end) in zip(got["audio"], spans):
        inside = (intervals[:, 0] < end - 1e-4) & (intervals[:, 1] > start + 1e-4)
        assert inside.sum() >= 1
        np.testing.assert_allclose(row, values[inside].mean(0), rtol=1e-6, atol=1e-6)


def test_sdk_word_rows_must_match_the_text_words(tmp_path):
    import h5py

    words = epath.Path(tmp_path) / "words.csd"
    words.write_bytes((DUMMY / "MOSI" / "CMU_MOSI_ModifiedTimestampedWords.csd").read_bytes())
    with h5py.File(str(words), "r+") as h5:
        h5["CMU_MOSI_ModifiedTimestampedWords/data/vid_b/features"][0, 0] = b"new york"
    path = DUMMY / "MOSI" / "CMU_MOSI_bcLSTM_Utterance_Audio.csd"
    with pytest.raises(MsaDataError) as e:
        _sdk("MOSI", words_path=words, sequences={"audio": (path, 73)}, align="words")
    msg = str(e.value)
    for part in (
        "CMU_MOSI_bcLSTM_Utterance_Audio.csd",
        "clip 'vid_b_1'",
        "key 'audio'",
        "3 word-aligned rows",
        "4 whitespace words",
    ):
        assert part in msg, msg


def test_alignment_kinds_of_the_configs():
    kinds = {c.name: c.alignment for c in mdb.BUILDER_CONFIGS}
    assert kinds["mosi_aligned"] == kinds["mosei_aligned"] == "tokens"
    assert kinds["mosi_sdk_aligned"] == kinds["sample_aligned"] == "words"
    assert (
        kinds["mosi_unaligned"]
        == kinds["mosi_sdk"]
        == kinds["sample"]
        == kinds["mosi_label_csv"]
        == "none"
    )
    aligned = mdb.get_config("mosi_sdk_aligned")
    sdk = mdb.get_config("mosi_sdk")
    assert aligned.aligned and (aligned.audio_len, aligned.text_len) == (50, 50)
    assert (aligned.audio_csd, aligned.audio_dim, aligned.labels_csd) == (
        sdk.audio_csd,
        73,
        sdk.labels_csd,
    )
    with pytest.raises(ValueError, match="nothing to align"):
        mdb.MsaConfig(name="x", source="label_csv", label_csv_file="l.csv", alignment="words")
    with pytest.raises(ValueError, match="only 'none' or 'tokens'"):
        mdb.MsaConfig(
            name="x",
            source="pickle",
            pickle_file="a.pkl",
            audio_dim=5,
            vision_dim=20,
            audio_len=1,
            vision_len=1,
            alignment="words",
        )
    with pytest.raises(ValueError, match="align must be"):
        mdb.sdk_config("x", align="tokens")
    # the record names the kind; `alignment` itself is derived, so older records still match
    record = mdb.source_record(mdb.get_config("sample_aligned"), None)
    assert record["alignment"] == "words" and "alignment" not in record["config"]
    assert "readers" in record["generator"]


# --------------------------------------------------------------------------------------------------------
# label.csv


def _csv(family, **kw):
    return {
        split: dict(pairs)
        for split, pairs in readers.label_csv_examples(
            DUMMY / family / "label.csv",
            unimodal_labels=kw.get("sims", False),
            label_range=1.0 if kw.get("sims") else 3.0,
        ).items()
    }


@pytest.mark.parametrize("family", ["MOSI", "MOSEI", "SIMS"])
def test_label_csv_layouts(family):
    got = _csv(family, sims=family == "SIMS")
    with open(DUMMY / family / "label.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {s: len(v) for s, v in got.items()} == {"train": 4, "validation": 2, "test": 3}
    for row in rows:
        clip_id = row["id"] if "id" in row else f"{row['video_id']}$_${row['clip_id']}"
        split = {"valid": "validation", "dev": "validation"}.get(row["mode"], row["mode"])
        ex = got[split][clip_id]
        assert ex["text"] == row["text"] and ex["label"] == np.float32(row["label"])
        if family == "SIMS":
            assert [ex[f"label_{m}"] for m in "TAV"] == [
                np.float32(row[f"label_{m}"]) for m in "TAV"
            ]


@pytest.mark.parametrize(
    "text, match",
    [
        ("id,text,label,mode\na,x,0.5,holdout\n", "line 2, key 'mode'"),
        ("id,text,label\na,x,0.5\n", "expected columns"),
        ("id,text,label,mode\na,x,0.5,train\na,y,1,test\n", "line 3.*duplicate id 'a'"),
        ("id,text,label,mode\na,x,good,train\n", "line 2, key 'label'.*not a number"),
        ("id,text,label,mode\na,x,7,train\n", r"line 2.*\[-3, 3\]"),
    ],
)
def test_label_csv_errors(tmp_path, text, match):
    path = epath.Path(tmp_path) / "label.csv"
    path.write_text(text)
    with pytest.raises(MsaDataError, match=match):
        readers.label_csv_examples(path, unimodal_labels=False, label_range=3.0)


# --------------------------------------------------------------------------------------------------------
# Configs, manual directory, offline build


def test_configs_features_follow_the_source():
    features = {
        c.name: set(mdb.Builder(config=c, data_dir="/tmp/unused").info.features)
        for c in mdb.BUILDER_CONFIGS
    }
    assert features["mosi_unaligned"] == {"id", "text", "label", "bert_ids", "audio", "vision"}
    assert features["sims_unaligned"] >= {"label_T", "label_A", "label_V"}
    assert features["mosi_sdk"] == {"id", "text", "label", "audio"}
    assert features["mosi_label_csv"] == {"id", "text", "label"}
    planted = {"label_T", "label_A", "label_V"}  # the sample's planted unimodal labels
    assert features["sample"] == {"id", "text", "label", "audio", "vision"} | planted
    assert features["sample_aligned"] == features["sample"]
    assert mdb.get_config("mosi_sdk").modalities == ("text", "audio")
    lengths = {c.name: (c.text_len, c.audio_len, c.vision_len) for c in mdb.BUILDER_CONFIGS}
    assert lengths["mosi_unaligned"] == (50, 375, 500) and lengths["mosi_aligned"] == (50, 50, 50)
    assert lengths["mosei_unaligned"] == (50, 500, 500) and lengths["sims_unaligned"] == (
        39,
        400,
        55,
    )
    assert mdb.get_config("sims_label_csv").label_range == 1.0
    assert mdb.get_config("mosi_sdk").word_interval_shift == 1
    assert mdb.get_config("mosei_sdk").word_interval_shift == 0


def test_config_validation():
    with pytest.raises(ValueError, match="needs `pickle_file`"):
        mdb.MsaConfig(
            name="x", source="pickle", audio_dim=5, vision_dim=20, audio_len=1, vision_len=1
        )
    with pytest.raises(ValueError, match="family"):
        mdb.MsaConfig(name="x", source="label_csv", family="iemocap", label_csv_file="l.csv")
    with pytest.raises(ValueError, match="both audio_csd and audio_dim"):
        mdb.sdk_config("x", audio_csd="a.csd")
    with pytest.raises(ValueError, match="both vision_dim and vision_len"):
        mdb.MsaConfig(name="x", source="label_csv", label_csv_file="l.csv", vision_dim=3)
    with pytest.raises(ValueError, match="Unknown msa config"):
        mdb.get_config("mosi")
    cfg = mdb.sdk_config("x", audio_csd="CMU_MOSI_COVAREP.csd", audio_dim=74)
    assert (
        cfg.audio_len == 375
        and cfg.word_interval_shift == 1
        and cfg.modalities == ("text", "audio")
    )
    assert mdb.sdk_config("y", words_csd="CMU_MOSI_TimestampedWords.csd").word_interval_shift == 0


def test_manual_file_search_order(tmp_path):
    root = epath.Path(tmp_path)
    (root / "MOSI" / "Processed").mkdir(parents=True)
    (root / "MOSI" / "Processed" / "unaligned_50.pkl").write_text("")
    found = mdb.find_manual_file(root, "unaligned_50.pkl", "mosi")
    assert found == root / "MOSI" / "Processed" / "unaligned_50.pkl"
    with pytest.raises(FileNotFoundError):
        mdb.find_manual_file(root, "unaligned_50.pkl", "mosei")
    (root / "unaligned_50.pkl").write_text("")
    assert mdb.find_manual_file(root, "unaligned_50.pkl", "mosi") == root / "unaligned_50.pkl"


@pytest.mark.parametrize("populate", [False, True])
def test_missing_manual_files_give_the_instructions(tmp_path, populate):
    manual = epath.Path(tmp_path) / "manual"
    if populate:  # a non-empty folder without the config's files
        manual.mkdir()
        (manual / "notes.txt").write_text("x")
    with pytest.raises(mdb.MissingManualFilesError) as e:
        mdb.prepare("mosi_sdk", manual_dir=manual, data_dir=tmp_path / "tfds")
    msg = str(e.value)
    assert "CMU_MOSI_Opinion_Labels.csd" in msg and "cmu_mosi_std_folds.json" in msg
    assert mdb.MANUAL_DOWNLOAD_INSTRUCTIONS.splitlines()[0] in msg


def test_prepare_is_offline_and_gives_the_documented_features(tmp_path):
    assert mdb.gcs_utils._is_gcs_disabled
    small = mdb.MsaConfig(
        name="sample_small",
        source="sample",
        audio_dim=5,
        vision_dim=20,
        audio_len=375,
        vision_len=500,
        num_examples=(6, 3, 3),
    )

    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    # Every GCS access of TFDS goes through these two; the builder must not reach them.
    with (
        mock.patch.object(mdb.gcs_utils, "exists", no_network),
        mock.patch.object(mdb.gcs_utils, "download_gcs_folder", no_network),
    ):
        builder = mdb.prepare(small, data_dir=tmp_path)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 6,
        "validation": 3,
        "test": 3,
    }
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="validation"))))
    assert ex["audio"].dtype == np.float32 and ex["audio"].ndim == 2 and ex["audio"].shape[1] == 5
    assert ex["vision"].dtype == np.float32 and ex["vision"].shape[1] == 20
    assert ex["label"].dtype == np.float32 and ex["label"].shape == ()
    assert isinstance(ex["text"], bytes) and isinstance(ex["id"], bytes)


def test_prepared_pickle_config_matches_the_file(tmp_path):
    builder = mdb.prepare("mosi_unaligned", manual_dir=DUMMY, data_dir=tmp_path)
    src = _pickle()["test"]
    got = {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="test"))}
    assert sorted(got) == sorted(src["id"])
    for i, clip_id in enumerate(src["id"]):
        assert got[clip_id]["audio"].shape == (src["audio_lengths"][i], 5)
        np.testing.assert_array_equal(
            got[clip_id]["vision"], src["vision"][i, : src["vision_lengths"][i]]
        )
        assert got[clip_id]["bert_ids"].dtype == np.int32


def test_duplicate_clip_ids_are_an_error(tmp_path):
    builder = mdb.Builder(config="mosi_label_csv", data_dir=str(tmp_path))
    with pytest.raises(MsaDataError, match="duplicate clip id 'v_1'"):
        list(builder._generate_examples([("v_1", {}), ("v_1", {})]))


# --------------------------------------------------------------------------------------------------------
# Dependency direction: keras_mmsa.data imports the builder, never the reverse


def test_no_module_under_datasets_imports_keras_mmsa():
    # datasets/, installed as keras_mmsa_datasets.
    root = pathlib.Path(mdb.__file__).resolve().parents[1]
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.relative_to(root)}: {n}"
                for n in names
                if n == "keras_mmsa" or n.startswith("keras_mmsa.")
            ]
    assert not offenders, offenders
    assert (root / "msa" / "sample.py").exists()  # the sample generator lives with the builder


# --------------------------------------------------------------------------------------------------------
# TFDS global state: no private flag is set at import time


def test_importing_data_and_builder_leaves_the_tfds_gcs_flag_alone():
    # Set the flag to the value TFDS does not default to, then import everything that touches the builder.
    code = (
        "from tensorflow_datasets.core.utils import gcs_utils\n"
        "gcs_utils._is_gcs_disabled = False\n"
        "import keras_mmsa.data, keras_mmsa.data.sample, keras_mmsa_datasets.msa\n"
        "from keras_mmsa_datasets.msa import msa_dataset_builder\n"
        "keras_mmsa.data.pipeline._builder_module()\n"
        "print('flag', gcs_utils._is_gcs_disabled)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split()[-2:] == ["flag", "False"], out.stdout


def test_making_a_builder_never_looks_gcs_up_and_restores_the_flag(monkeypatch, tmp_path):
    calls = []

    def exists(path):  # gcs_utils's only network call, reached when the switch is on
        calls.append(str(path))
        raise AssertionError(f"GCS look-up of {path}")

    monkeypatch.setattr(gcs_utils, "exists", exists)
    monkeypatch.setattr(gcs_utils, "_is_gcs_disabled", False)  # e.g. another library turned GCS on
    builder = mdb.Builder(config="sample", data_dir=str(tmp_path))  # not prepared: TFDS asks GCS
    assert not builder.is_prepared()
    assert calls == []
    assert gcs_utils._is_gcs_disabled is False  # the caller's value is given back
