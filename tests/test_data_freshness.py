"""Prepared data stays tied to its sources, and preparing it changes no run's random numbers (issue 11, 1-2).

1. A prepared config remembers a fingerprint of what it was made from (the manual files' names, sizes, content
   hashes / mtimes; the `sample` generator's source and parameters; the config's fields). Every load compares
   it with the manual directory it is given: the same files reuse the data without preparing again, other
   files prepare again (a broken file then fails, naming it), never a silent reuse of the old data.
2. Preparing consumes no global random state (TFDS names its temporary folder with Python's `random`, which
   also seeds every unseeded Keras initializer), and reading is ordered: a run that prepares the data starts
   from the same weights and sees the same examples as a run that reuses it.
"""

import os
import pickle
import random
import shutil
import types

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from keras_mmsa_datasets.msa import MsaConfig, MsaDataError
from keras_mmsa_datasets.msa import msa_dataset_builder as mdb

from keras_mmsa.data import pipeline
from keras_mmsa.training import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY_PICKLE = os.path.join(
    REPO, "datasets", "msa", "dummy_data", "MOSI", "Processed", "unaligned_50.pkl"
)


def _manual_dir(root, content=None):
    """A manual dir holding MOSI's `unaligned_50.pkl`: the dummy file, or `content` (bytes or a dict)."""
    folder = root / "MOSI" / "Processed"
    folder.mkdir(parents=True)
    target = folder / "unaligned_50.pkl"
    if content is None:
        shutil.copyfile(DUMMY_PICKLE, target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_bytes(pickle.dumps(content))
    return root


def _dummy_pickle():
    with open(DUMMY_PICKLE, "rb") as f:
        return pickle.load(f)


def _labels(builder, split="train"):
    return {
        ex["id"].decode(): float(ex["label"])
        for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
    }


def _info_file(data_dir, config="mosi_unaligned"):
    return data_dir / "msa" / config / "1.0.0" / "dataset_info.json"


# ---------------------------------------------------------------------------------------------------------
# 1. Stale data


def test_a_broken_file_in_another_manual_dir_is_an_error_not_the_old_data(tmp_path):
    data_dir = tmp_path / "data"
    pipeline.prepare_builder(
        "mosi_unaligned", data_dir=data_dir, manual_dir=_manual_dir(tmp_path / "good")
    )
    garbage = _manual_dir(tmp_path / "garbage", b"not a pickle at all")
    with pytest.raises(MsaDataError, match=r"garbage.*unaligned_50\.pkl"):
        pipeline.prepare_builder("mosi_unaligned", data_dir=data_dir, manual_dir=garbage)
    # The loader (what the workflow calls for every split) checks too.
    with pytest.raises(MsaDataError, match=r"unaligned_50\.pkl"):
        pipeline.load("mosi_unaligned", "train", 2, data_dir=data_dir, manual_dir=garbage)


def test_changed_files_are_prepared_again(tmp_path):
    data_dir = tmp_path / "data"
    first = pipeline.prepare_builder(
        "mosi_unaligned", data_dir=data_dir, manual_dir=_manual_dir(tmp_path / "v1")
    )
    assert _labels(first)["mosi_train$_$1"] == pytest.approx(1.6)
    data = _dummy_pickle()
    data["train"]["regression_labels"] = np.array([-0.4, 0.2, 0.8, 1.0], np.float32)
    # Another folder with other content, then the same folder with its file replaced.
    second = pipeline.prepare_builder(
        "mosi_unaligned", data_dir=data_dir, manual_dir=_manual_dir(tmp_path / "v2", data)
    )
    assert _labels(second)["mosi_train$_$1"] == pytest.approx(-0.4)
    data["train"]["regression_labels"] = np.array([0.6, 0.2, 0.8, 1.0], np.float32)
    (tmp_path / "v2" / "MOSI" / "Processed" / "unaligned_50.pkl").write_bytes(pickle.dumps(data))
    third = pipeline.prepare_builder(
        "mosi_unaligned", data_dir=data_dir, manual_dir=tmp_path / "v2"
    )
    assert _labels(third)["mosi_train$_$1"] == pytest.approx(0.6)
    batch = next(
        iter(pipeline.load("mosi_unaligned", "train", 4, data_dir=data_dir, shuffle=False))
    )
    assert float(batch[1][0]) == pytest.approx(0.6)


def test_unchanged_files_are_reused_without_preparing(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    manual = _manual_dir(tmp_path / "manual")
    pipeline.prepare_builder("mosi_unaligned", data_dir=data_dir, manual_dir=manual)
    stamp = _info_file(data_dir).stat().st_mtime_ns

    def no_prepare(self, *args, **kwargs):
        raise AssertionError("prepared again although the sources did not change")

    monkeypatch.setattr(mdb.Builder, "_download_and_prepare", no_prepare)
    copy = tmp_path / "copy"  # same content, new paths and mtimes
    shutil.copytree(manual, copy)
    for folder in (manual, copy, None):
        pipeline.prepare_builder("mosi_unaligned", data_dir=data_dir, manual_dir=folder)
        pipeline.load("mosi_unaligned", "test", 2, data_dir=data_dir, manual_dir=folder)
    assert _info_file(data_dir).stat().st_mtime_ns == stamp


def _tiny_sample(**kw):
    return MsaConfig(
        name="tiny_sample",
        source="sample",
        audio_dim=5,
        vision_dim=20,
        audio_len=375,
        vision_len=500,
        num_examples=(4, 2, 2),
        **kw,
    )


def test_generated_config_follows_its_generator_parameters(tmp_path):
    first = _labels(mdb.prepare(_tiny_sample(seed=1), data_dir=tmp_path))
    again = _labels(mdb.prepare(_tiny_sample(seed=1), data_dir=tmp_path))
    other = _labels(mdb.prepare(_tiny_sample(seed=2), data_dir=tmp_path))
    assert again == first
    assert other != first


def test_a_config_without_its_files_refuses_other_fields(tmp_path):
    """A custom config reusing a prepared config's name with other fields: no silent reuse."""
    data_dir = tmp_path / "data"
    mdb.prepare(_tiny_sample(seed=1), data_dir=data_dir)
    renamed = MsaConfig(
        name="tiny_sample", source="label_csv", label_csv_file="label.csv", text_len=50
    )
    with pytest.raises(MsaDataError, match=r"tiny_sample.*source"):
        pipeline.prepare_builder(renamed, data_dir=data_dir)


# ---------------------------------------------------------------------------------------------------------
# 2. The run that prepares the data is the run that reuses it


def test_preparing_consumes_no_global_random_state(tmp_path):
    # The legacy global generators on purpose: they are what Keras and user code seed and draw from.
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002
    expected = (random.random(), np.random.random())  # noqa: NPY002
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002
    mdb.prepare(_tiny_sample(), data_dir=tmp_path)
    assert (random.random(), np.random.random()) == expected  # noqa: NPY002


def _run_start(data_dir, manual_dir, tokenizer):
    """What `train_and_evaluate` does before training: seed, load the data, make weights."""
    config = types.SimpleNamespace(
        dataset="mosi_unaligned",
        data_dir=str(data_dir),
        manual_dir=str(manual_dir),
        seed=7,
        deterministic=False,
        modalities=None,
        max_lengths={"audio": 8, "vision": 8},
        train={"batch_size": 2},
    )
    run.configure_determinism(config)
    data = run.load_data(config, tokenizer)
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    ids = [
        meta["id"].numpy().tolist()
        for _, _, meta in pipeline.load(
            "mosi_unaligned",
            "train",
            2,
            data_dir=data_dir,
            shuffle=True,
            seed=7,
            with_metadata=True,
            text_backbone=tokenizer,
        )
    ]
    labels = [float(y) for _, y in data["train_examples"]]
    return layer.get_weights()[0], ids, labels


def test_the_preparing_run_starts_like_a_reusing_run(tmp_path):
    from keras_mmsa import backbones

    _, tokenizer = backbones.load_text_backbone("tiny")
    manual = _manual_dir(tmp_path / "manual")
    fresh = _run_start(tmp_path / "data", manual, tokenizer)  # prepares
    reuse = _run_start(tmp_path / "data", manual, tokenizer)  # reads the prepared data
    np.testing.assert_array_equal(fresh[0], reuse[0])
    assert fresh[1] == reuse[1]
    assert fresh[2] == reuse[2]
