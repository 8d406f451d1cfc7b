"""The `mosi_sdk` and `mosi_label_csv` configs on the real CMU-MOSI files (skipped when they are absent)."""

import csv
from collections import Counter

import numpy as np
import pytest
import tensorflow_datasets as tfds
from keras_mmsa_datasets.msa import msa_dataset_builder as mdb
from keras_mmsa_datasets.msa import readers

# The clips the README of the real data says label.csv lacks.
NOT_IN_LABEL_CSV = {"2WGyTLYerpo_44", "5W7Z1C_fDaE_24", "BioHAh1qJAQ_30", "lXPQBPVc5Cw_30"}


@pytest.fixture(scope="module")
def real_sdk(tmp_path_factory):
    from conftest import real_mosi_dir

    mosi_dir = real_mosi_dir()
    if not (mosi_dir / "CMU_MOSI_Opinion_Labels.csd").exists():
        pytest.skip(f"real CMU-MOSI files not found in {mosi_dir}")
    builder = mdb.prepare("mosi_sdk", manual_dir=mosi_dir, data_dir=tmp_path_factory.mktemp("tfds"))
    examples = {}
    for split in readers.SPLITS:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            examples[ex["id"].decode()] = (split, ex)
    return builder, examples


def _label_csv(mosi_dir):
    with open(mosi_dir / "label.csv", newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def test_segments_and_standard_split(real_sdk):
    builder, examples = real_sdk
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert counts == {"train": 1284, "validation": 229, "test": 686}
    assert len(examples) == 2199


def test_labels_and_splits_equal_label_csv(real_sdk, mosi_dir):
    _, examples = real_sdk
    reference = _label_csv(mosi_dir)
    assert set(examples) - set(reference) == NOT_IN_LABEL_CSV
    assert set(reference) <= set(examples)
    mode = {"train": "train", "dev": "validation", "test": "test"}
    for clip_id, row in reference.items():
        split, ex = examples[clip_id]
        assert ex["label"] == np.float32(row["label"]), clip_id
        assert split == mode[row["mode"]], clip_id


def test_audio_is_the_bclstm_vector_of_each_clip(real_sdk, mosi_dir):
    _, examples = real_sdk
    csd = readers.read_csd(mosi_dir / "CMU_MOSI_bcLSTM_Utterance_Audio.csd")
    for video, (values, _) in csd.items():
        for k in range(len(values)):
            np.testing.assert_array_equal(
                examples[f"{video}_{k + 1}"][1]["audio"], values[k : k + 1]
            )
    # Cross-check against the original bc-LSTM csv rows through mosi_index.csv.
    tables = {
        s: np.loadtxt(
            mosi_dir / f"audio_{s}0.csv", delimiter=",", converters=lambda x: float(x.strip('"'))
        )
        for s in ("train", "test")
    }
    with open(mosi_dir / "mosi_index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    assert len(index) == 2199
    for row in index:
        expected = tables[row["bclstm_split"]][int(row["bclstm_row"]), :73].astype(np.float32)
        np.testing.assert_array_equal(examples[row["id"]][1]["audio"][0], expected)


def test_segment_text_agrees_with_label_csv(real_sdk, mosi_dir):
    """Measured 92.3% exact and word-F1 0.995; label.csv's own transcripts differ at some segment edges."""
    _, examples = real_sdk
    reference = _label_csv(mosi_dir)
    exact, f1 = [], []
    for clip_id, row in reference.items():
        ours, theirs = examples[clip_id][1]["text"].decode().split(), row["text"].split()
        exact.append(ours == theirs)
        common = sum((Counter(ours) & Counter(theirs)).values())
        f1.append(2 * common / max(1, len(ours) + len(theirs)))
    assert np.mean(exact) > 0.9 and np.mean(f1) > 0.98


def test_label_csv_config_on_the_real_file(mosi_dir, tmp_path):
    builder = mdb.prepare("mosi_label_csv", manual_dir=mosi_dir, data_dir=tmp_path)
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert counts == {"train": 1281, "validation": 229, "test": 685}


def test_word_aligned_config_repeats_each_clips_vector_per_word(real_sdk, mosi_dir):
    """`mosi_sdk_aligned`: the same clips and texts as `mosi_sdk`, the bc-LSTM vector once per word."""
    _, examples = real_sdk
    config = mdb.get_config("mosi_sdk_aligned")
    splits = readers.sdk_examples(
        labels_path=mosi_dir / config.labels_csd,
        words_path=mosi_dir / config.words_csd,
        folds_path=mosi_dir / config.folds_json,
        sequences={"audio": (mosi_dir / config.audio_csd, 73)},
        label_column=0,
        word_interval_shift=config.word_interval_shift,
        fix_nonfinite=False,
        label_range=3.0,
        align="words",
    )
    aligned = {clip_id: ex for pairs in splits.values() for clip_id, ex in pairs}
    assert set(aligned) == set(examples) and len(aligned) == 2199
    words = 0
    for clip_id, ex in aligned.items():
        plain = examples[clip_id][1]
        assert ex["text"] == plain["text"].decode()
        n = len(ex["text"].split())
        words += n
        np.testing.assert_array_equal(ex["audio"], np.repeat(plain["audio"], n, axis=0))
    assert words > 27000  # 27,674 words in 2199 segments (one segment has none)
