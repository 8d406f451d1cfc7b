"""Writes `dummy_data/`: tiny synthetic files in exactly the real layouts, for `msa_dataset_builder_test.py`.

    python -m keras_mmsa_datasets.msa.make_dummy_data   # rewrites datasets/msa/dummy_data/

The manual directory of the builder test is `dummy_data/` itself, laid out like MMSA's dataset root
(`MOSI/`, `MOSEI/`, `SIMS/`, each with `Processed/*.pkl` and `label.csv`) plus the CMU-MultimodalSDK files
(`MOSI/*.csd`, `MOSEI/*.csd`, standard folds json). Every config has 4 / 2 / 3 train / validation / test
examples. Shapes are the real ones except the padded lengths and BERT's hidden size, which are shrunk to keep
the files small (the builder reads padded lengths from the files). Content is deterministic; the constants
below are what the tests compare the builder's output with.
"""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
from etils import epath

DUMMY_DIR = epath.Path(__file__).parent / "dummy_data"
SPLIT_SIZES = {"train": 4, "valid": 2, "test": 3}
# Padded lengths (text tokens, audio frames, vision frames) of the dummy pickles, and the hidden size of `text`.
TEXT_LEN, AUDIO_LEN, VISION_LEN, HIDDEN = 8, 12, 10, 8
PICKLE_DIMS = {"MOSI": (5, 20), "MOSEI": (74, 35), "SIMS": (33, 709)}
SIMS_VISION_LEN = 2
WORDS = ("the", "movie", "was", "good", "bad", "really", "um", "i", "liked", "it", "not", "fun")

# CMU-MultimodalSDK dummy: videos -> list of segments (words of the segment, label); folds over the videos.
# `vid_extra` is labelled but in no fold (the builder skips it).
SDK_VIDEOS = {
    "vid_a": [(("the", "movie", "was", "good"), 2.0), (("um", "i", "liked", "it"), 1.4)],
    "vid_b": [(("it", "was", "bad"), -1.8), (("really", "bad"), -2.6)],
    "vid_c": [(("not", "fun"), -0.6), (("the", "movie"), 0.0)],
    "vid_d": [(("i", "liked", "it"), 1.0), (("was", "it", "good"), 0.4), (("um",), -0.2)],
    "vid_extra": [(("ignored",), 0.8)],
}
SDK_FOLDS = {
    "standard_train_fold": ["vid_a", "vid_b"],
    "standard_valid_fold": ["vid_c"],
    "standard_test_fold": ["vid_d", "vid_not_labelled"],
}
SDK_WORD_SECONDS = (
    0.4  # each word lasts this long; an `sp` silence of the same length follows each segment
)
COVAREP_RATE, FACET_RATE = 4.0, 2.0  # frames per second of the dummy frame-level sequences


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([20240, *key])


def _sentence(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))


def pickle_split(family: str, split_index: int, n: int, aligned: bool) -> dict:
    """One split of an MMSA feature pickle with the keys and dtypes of MMSA's files."""
    rng = _rng(len(family), split_index, int(aligned))
    audio_dim, vision_dim = PICKLE_DIMS[family]
    t_a = TEXT_LEN if aligned else AUDIO_LEN
    t_v = TEXT_LEN if aligned else (SIMS_VISION_LEN if family == "SIMS" else VISION_LEN)
    mask_len = rng.integers(3, TEXT_LEN + 1, size=n)
    text_bert = np.zeros((n, 3, TEXT_LEN), np.float32)
    for i, m in enumerate(mask_len):
        text_bert[i, 0, :m] = np.concatenate([[101], rng.integers(1000, 3000, m - 2), [102]])
        text_bert[i, 1, :m] = 1
    audio_lengths = mask_len if aligned else rng.integers(1, t_a + 1, size=n)
    vision_lengths = mask_len if aligned else rng.integers(1, t_v + 1, size=n)
    audio = np.zeros((n, t_a, audio_dim), np.float32)
    vision = np.zeros((n, t_v, vision_dim), np.float32)
    for i in range(n):
        audio[i, : audio_lengths[i]] = rng.normal(size=(audio_lengths[i], audio_dim))
        vision[i, : vision_lengths[i]] = rng.normal(size=(vision_lengths[i], vision_dim))
    audio[0, 0, 0] = -np.inf  # MMSA's files have -inf audio; the builder turns it into 0
    label_range = 1.0 if family == "SIMS" else 3.0
    labels = np.round(rng.uniform(-label_range, label_range, n) * 5) / 5
    labels[-1] = 0.0
    video = ("train", "valid", "test")[split_index]
    split = {
        "raw_text": np.array([_sentence(rng) for _ in range(n)], dtype=object),
        "text": rng.normal(size=(n, TEXT_LEN, HIDDEN)).astype(np.float32),
        "text_bert": text_bert,
        "audio": audio,
        "vision": vision,
        "id": np.array([f"{family.lower()}_{video}$_${i + 1}" for i in range(n)], dtype=object),
        "regression_labels": labels.astype(np.float32),
        "classification_labels": (labels > 0).astype(np.float32),
        "annotations": np.array(
            ["Positive" if y > 0 else "Negative" for y in labels], dtype=object
        ),
    }
    if not aligned:
        split["audio_lengths"] = [int(x) for x in audio_lengths]
        split["vision_lengths"] = [int(x) for x in vision_lengths]
    if family == "SIMS":
        for m in "TAV":
            unimodal = np.clip(labels + rng.normal(0, 0.3, n), -1, 1)
            split[f"regression_labels_{m}"] = np.round(unimodal * 5).astype(np.float32) / 5
            split[f"classification_labels_{m}"] = (unimodal > 0).astype(np.float32)
    return split


def write_pickles(root: epath.Path) -> None:
    for family, files in (
        ("MOSI", ("unaligned_50.pkl", "aligned_50.pkl")),
        ("MOSEI", ("unaligned_50.pkl", "aligned_50.pkl")),
        ("SIMS", ("unaligned_39.pkl",)),
    ):
        for file in files:
            aligned = file.startswith("aligned")
            data = {
                split: pickle_split(family, i, n, aligned)
                for i, (split, n) in enumerate(SPLIT_SIZES.items())
            }
            path = root / family / "Processed" / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(data, protocol=4))


def write_label_csvs(root: epath.Path) -> None:
    rng = _rng(7)
    # MOSI: MMSA layout; MOSEI: the simple `id,text,label,mode` layout with "dev"; SIMS: MMSA with T/A/V.
    rows = {
        "MOSI": ["video_id,clip_id,text,label,annotation,mode"],
        "MOSEI": ["id,text,label,mode"],
    }
    rows["SIMS"] = ["video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"]
    for family in rows:
        scale = 1.0 if family == "SIMS" else 3.0
        for split, n in SPLIT_SIZES.items():
            for i in range(n):
                label = round(float(rng.uniform(-scale, scale)), 1)
                text = _sentence(rng)
                if family == "MOSI":
                    rows[family].append(f"{split}vid,{i + 1},{text},{label},Neutral,{split}")
                elif family == "MOSEI":
                    mode = "dev" if split == "valid" else split
                    rows[family].append(f"{split}vid_{i + 1},{text},{label},{mode}")
                else:
                    tav = ",".join(
                        str(round(float(np.clip(label + rng.normal(0, 0.2), -1, 1)), 1))
                        for _ in "TAV"
                    )
                    rows[family].append(
                        f"{split}vid,{i + 1:04d},{text},{label},{tav},Neutral,{split}"
                    )
    for family, lines in rows.items():
        path = root / family / "label.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def sdk_timeline(video: str) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """True word intervals (with `sp` between segments) and the segment intervals of one dummy video."""
    words, segments = [], []
    t = 1.0 + 0.1 * len(video)
    for segment_words, _ in SDK_VIDEOS[video]:
        start = t
        for w in segment_words:
            words.append((w, t, t + SDK_WORD_SECONDS))
            t += SDK_WORD_SECONDS
        segments.append((start, t))
        words.append(("sp", t, t + SDK_WORD_SECONDS))
        t += SDK_WORD_SECONDS
    return words, segments


def _write_csd(
    path: epath.Path, root_name: str, data: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """An HDF5 computational sequence: `<root>/data/<video>/{features, intervals}` + `<root>/metadata`."""
    import h5py  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(str(path), "w") as h5:
        group = h5.create_group(root_name)
        for video, (features, intervals) in data.items():
            g = group.create_group(f"data/{video}")
            g.create_dataset("features", data=features)
            g.create_dataset("intervals", data=intervals)
        meta = group.create_group("metadata")
        meta.create_dataset("root name", data=np.array([root_name.encode()], dtype=object))
        meta.create_dataset("dataset name", data=np.array([b"dummy"], dtype=object))


def write_sdk(root: epath.Path, family: str) -> None:
    """Labels, words (MOSI: in the shifted layout of `CMU_MOSI_ModifiedTimestampedWords.csd`), folds, features."""
    folder = root / family
    labels, words, utterance, covarep, facet = {}, {}, {}, {}, {}
    for k, video in enumerate(SDK_VIDEOS):
        rng = _rng(11, k, len(family))
        timeline, segments = sdk_timeline(video)
        values = np.array([y for _, y in SDK_VIDEOS[video]], np.float32)[:, None]
        if family == "MOSEI":  # sentiment + 6 emotions
            values = np.concatenate(
                [values, rng.uniform(0, 3, (len(values), 6)).astype(np.float32)], axis=1
            )
        labels[video] = (values, np.array(segments, np.float32))
        tokens = np.array([w.encode() for w, _, _ in timeline], dtype="S12")[:, None]
        intervals = np.array([(s, e) for _, s, e in timeline], np.float64)
        if family == "MOSI":
            # The modified file pairs word i with the interval of word i-1: store interval i+1 at row i.
            intervals = np.concatenate([intervals[1:], intervals[-1:] + SDK_WORD_SECONDS], axis=0)
        words[video] = (tokens, intervals)
        utterance[video] = (
            rng.normal(size=(len(segments), 73)).astype(np.float32),
            np.array(segments, np.float64),
        )
        end = segments[-1][1]
        for out, rate, dim in ((covarep, COVAREP_RATE, 74), (facet, FACET_RATE, 35)):
            starts = np.arange(0.0, end, 1.0 / rate)
            frames = rng.normal(size=(len(starts), dim)).astype(np.float32)
            if out is covarep:
                frames[::7, 3] = -np.inf  # COVAREP has -inf; the builder turns audio -inf into 0
            out[video] = (frames, np.stack([starts, starts + 1.0 / rate], axis=1))
    if family == "MOSI":
        _write_csd(folder / "CMU_MOSI_Opinion_Labels.csd", "Opinion Segment Labels", labels)
        _write_csd(
            folder / "CMU_MOSI_ModifiedTimestampedWords.csd",
            "CMU_MOSI_ModifiedTimestampedWords",
            words,
        )
        _write_csd(
            folder / "CMU_MOSI_bcLSTM_Utterance_Audio.csd", "bcLSTM Utterance Audio", utterance
        )
        _write_csd(folder / "CMU_MOSI_COVAREP.csd", "COVAREP", covarep)
        _write_csd(folder / "CMU_MOSI_Visual_Facet_41.csd", "FACET 4.1", facet)
        (folder / "cmu_mosi_std_folds.json").write_text(json.dumps(SDK_FOLDS, indent=1) + "\n")
    else:
        _write_csd(folder / "CMU_MOSEI_Labels.csd", "All Labels", labels)
        _write_csd(folder / "CMU_MOSEI_TimestampedWords.csd", "words", words)
        _write_csd(folder / "CMU_MOSEI_COVAREP.csd", "COVAREP", covarep)
        _write_csd(folder / "CMU_MOSEI_VisualFacet42.csd", "FACET 4.2", facet)
        (folder / "cmu_mosei_std_folds.json").write_text(json.dumps(SDK_FOLDS, indent=1) + "\n")


def main(root: epath.PathLike = DUMMY_DIR) -> None:
    root = epath.Path(root)
    write_pickles(root)
    write_label_csvs(root)
    write_sdk(root, "MOSI")
    write_sdk(root, "MOSEI")
    print(f"dummy data written to {root}")


if __name__ == "__main__":
    main(*sys.argv[1:])
