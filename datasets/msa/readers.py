"""Readers of the MSA source formats: MMSA feature pickles, CMU-MultimodalSDK `.csd` files, `label.csv`.

Each reader turns files into per-example records (dicts with exactly the builder's features, see
`keras_mmsa/data/spec.py`) and checks them on the way: a bad file raises `MsaDataError` (a `ValueError`) that
names the file, the split (or video), the key and the expected shape. Files are read through `epath`
(so `gs://` and other `tf.io.gfile` file systems work), never with `open`/`os`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
from collections.abc import Iterator

import numpy as np
from absl import logging
from etils import epath

SPLITS = ("train", "validation", "test")
# Split names as MMSA pickles / label.csv files spell them -> TFDS split names.
PICKLE_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
CSV_MODES = {
    "train": "train",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}
# Slack (seconds) when comparing SDK intervals: label intervals are float32, word/feature intervals float64.
INTERVAL_TOLERANCE = 1e-4


class MsaDataError(ValueError):
    """A source file does not have the expected layout or content."""


# ----------------------------------------------------------------------------------------------------------
# Shared checks


def _finite_or_raise(array, *, where: str, key: str, expected: str) -> None:
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(np.asarray(array)))[0].tolist()
        value = np.asarray(array)[tuple(bad)]
        raise MsaDataError(
            f"{where}, key '{key}': non-finite value {value} at index {bad}; expected finite {expected}."
        )


def _check_label(value, *, label_range: float, where: str, key: str) -> np.float32:
    label = np.float32(value)
    if not np.isfinite(label) or abs(float(label)) > label_range + 1e-4:
        raise MsaDataError(
            f"{where}, key '{key}': label {value!r} is not a finite number in "
            f"[-{label_range:g}, {label_range:g}] (wrong dataset family for this config?)."
        )
    return label


def _as_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


# ----------------------------------------------------------------------------------------------------------
# MMSA feature pickles


def load_pickle(path: epath.Path) -> dict:
    """Loads an MMSA feature pickle (`{train, valid, test}` dicts). Pickles run code: load only trusted files."""
    with epath.Path(path).open("rb") as f:
        try:
            data = pickle.load(f)
        # A truncated/corrupt file raises anything from EOFError to ValueError.
        except Exception as e:
            raise MsaDataError(
                f"{path}: not a readable MMSA feature pickle ({type(e).__name__}: {e}); re-download the file."
            ) from e
    if not isinstance(data, dict) or any(s not in data for s in PICKLE_SPLITS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise MsaDataError(
            f"{path}: expected an MMSA feature pickle, a dict with splits {list(PICKLE_SPLITS)}; got {keys}."
        )
    return data


def _trim_length(lengths, i: int, total: int, *, where: str, key: str) -> int:
    value = float(lengths[i])
    if not np.isfinite(value) or value != int(value) or not 0 <= value <= total:
        raise MsaDataError(
            f"{where}, key '{key}'[{i}]: length {lengths[i]!r} is not an integer in [0, {total}] "
            f"(the padded sequence length)."
        )
    return int(value)


def pickle_examples(
    data: dict,
    *,
    path: str,
    file_split: str,
    aligned: bool,
    audio_dim: int | None,
    vision_dim: int | None,
    bert_ids: bool,
    unimodal_labels: bool,
    label_range: float,
) -> Iterator[tuple[str, dict]]:
    """Checks one split of an MMSA pickle and yields `(id, example)`.

    Sequences: unaligned audio/vision are cut to `audio_lengths` / `vision_lengths` (MMSA pads at the end);
    aligned audio/vision are word-aligned with the BERT tokens, so they are cut to the text mask length
    (`text_bert[:, 1].sum()`, as MMSA's models do for aligned data) and have the length of `bert_ids`; without
    `text_bert` they keep their full length. A length of 0 becomes one all-zero frame (logged).
    `audio == -inf` becomes 0 (as MMSA's loader does); any other non-finite value is an error.
    `bert_ids` = `text_bert[:, 0]` cut to its mask length (so it starts with [CLS] and ends with [SEP]).
    """
    where = f"{path}: split '{file_split}'"
    split = data[file_split]
    if not isinstance(split, dict):
        raise MsaDataError(f"{where}: expected a dict of arrays, got {type(split).__name__}.")

    def get(key: str, expected: str):
        if key not in split:
            raise MsaDataError(
                f"{where}: missing key '{key}' (expected {expected}); keys present: {sorted(split)}."
            )
        return split[key]

    labels = np.asarray(get("regression_labels", "(N,) float labels"))
    if labels.ndim != 1:
        raise MsaDataError(
            f"{where}, key 'regression_labels': expected shape (N,), got {labels.shape}."
        )
    n = labels.shape[0]

    def array(key: str, shape: str, ndim: int, last: int | None = None, dtype=None):
        value = np.asarray(get(key, f"shape {shape}"), dtype=dtype)
        if (
            value.ndim != ndim
            or value.shape[0] != n
            or (last is not None and value.shape[-1] != last)
        ):
            raise MsaDataError(
                f"{where}, key '{key}': expected shape {shape} with N={n} (from 'regression_labels'), "
                f"got {value.shape}."
            )
        return value

    ids = array("id", "(N,)", 1)
    texts = array("raw_text", "(N,)", 1)
    extra_labels = {}
    if unimodal_labels:
        for m in "TAV":
            extra_labels[f"label_{m}"] = array(f"regression_labels_{m}", "(N,)", 1)
    text_bert = None
    if bert_ids:
        text_bert = array("text_bert", "(N, 3, L) [input_ids, input_mask, segment_ids]", 3)
        if text_bert.shape[1] != 3:
            raise MsaDataError(
                f"{where}, key 'text_bert': expected shape (N, 3, L) [input_ids, input_mask, segment_ids], "
                f"got {text_bert.shape}."
            )
        _finite_or_raise(text_bert, where=where, key="text_bert", expected="token ids and mask")
    modalities = {}
    for name, dim in (("audio", audio_dim), ("vision", vision_dim)):
        if dim is None:
            continue
        letter = "a" if name == "audio" else "v"
        value = array(name, f"(N, T_{letter}, {dim})", 3, last=dim, dtype=np.float32)
        if name == "audio":
            value = np.where(value == -np.inf, np.float32(0.0), value)
        if aligned:
            if text_bert is not None and value.shape[1] != text_bert.shape[2]:
                raise MsaDataError(
                    f"{where}, key '{name}': aligned features must have one frame per text token, expected "
                    f"shape (N, {text_bert.shape[2]}, {dim}) like 'text_bert', got {value.shape}."
                )
            lengths = None
        else:
            lengths = np.asarray(get(f"{name}_lengths", "(N,) valid frame counts"))
            if lengths.shape != (n,):
                raise MsaDataError(
                    f"{where}, key '{name}_lengths': expected shape ({n},), got {lengths.shape}."
                )
        modalities[name] = (value, lengths)

    zero_length = 0
    for i in range(n):
        clip_id = _as_str(ids[i])
        example = {
            "id": clip_id,
            "text": _as_str(texts[i]),
            "label": _check_label(
                labels[i], label_range=label_range, where=where, key=f"regression_labels'[{i}]"
            ),
        }
        for key, values in extra_labels.items():
            example[key] = _check_label(
                values[i],
                label_range=label_range,
                where=where,
                key=f"regression_labels_{key[-1]}'[{i}]",
            )
        mask_len = None
        if text_bert is not None:
            mask_len = int(np.asarray(text_bert[i, 1]).sum())
            if not 1 <= mask_len <= text_bert.shape[2]:
                raise MsaDataError(
                    f"{where}, key 'text_bert'[{i}, 1]: empty input mask (clip {clip_id})."
                )
            example["bert_ids"] = np.asarray(text_bert[i, 0, :mask_len]).astype(np.int32)
        for name, (value, lengths) in modalities.items():
            total = value.shape[1]
            if lengths is not None:
                length = _trim_length(lengths, i, total, where=where, key=f"{name}_lengths")
            else:
                length = mask_len if mask_len is not None else total
            frames = value[i, :length]
            if length == 0:
                zero_length += 1
                frames = np.zeros((1, value.shape[2]), np.float32)
            _finite_or_raise(
                frames,
                where=f"{where}, clip {clip_id} (index {i})",
                key=name,
                expected=f"features of shape (T, {value.shape[2]})",
            )
            example[name] = np.ascontiguousarray(frames, dtype=np.float32)
        yield clip_id, example
    if zero_length:
        logging.warning(
            "%s: %d sequences of length 0 were replaced by one zero frame.", where, zero_length
        )


# ----------------------------------------------------------------------------------------------------------
# CMU-MultimodalSDK computational sequences (.csd, HDF5)


class CsdFile:
    """A computational sequence opened lazily: `csd[video] -> (features (n, d), intervals (n, 2) float64 s)`.

    Videos are read on access, so large feature sequences (COVAREP, FACET) need not fit in memory at once.
    Use as a context manager.
    """

    def __init__(self, path: epath.Path):
        import h5py  # noqa: PLC0415 - only the SDK configs need it

        self.path = epath.Path(path)
        self._file = self.path.open("rb")
        try:
            self._h5 = h5py.File(self._file, "r")
        except OSError as e:
            self._file.close()
            raise MsaDataError(
                f"{self.path}: not a readable HDF5 computational sequence ({e})."
            ) from e
        roots = [
            k for k in self._h5 if isinstance(self._h5[k], h5py.Group) and "data" in self._h5[k]
        ]
        if len(roots) != 1:
            groups = list(self._h5)
            self.close()
            raise MsaDataError(
                f"{self.path}: expected exactly one root group holding "
                f"'data/<video_id>/{{features, intervals}}', found {groups}."
            )
        self._data = self._h5[roots[0]]["data"]
        self.videos = tuple(self._data.keys())

    def __contains__(self, video: str) -> bool:
        return video in self._data

    def __getitem__(self, video: str) -> tuple[np.ndarray, np.ndarray]:
        group = self._data[video]
        if "features" not in group or "intervals" not in group:
            raise MsaDataError(
                f"{self.path}: video '{video}' lacks 'features' or 'intervals' (has {list(group.keys())})."
            )
        features = group["features"][()]
        intervals = np.asarray(group["intervals"][()], dtype=np.float64)
        if features.ndim != 2 or intervals.shape != (features.shape[0], 2):
            raise MsaDataError(
                f"{self.path}: video '{video}': expected 'features' (n, d) and 'intervals' (n, 2), got "
                f"{features.shape} and {intervals.shape}."
            )
        return features, intervals

    def close(self) -> None:
        self._h5.close()
        self._file.close()

    def __enter__(self) -> CsdFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_csd(path: epath.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads a whole computational sequence: `{video_id: (features (n, d), intervals (n, 2) float64 s)}`."""
    with CsdFile(path) as csd:
        return {video: csd[video] for video in csd.videos}


def read_folds(path: epath.Path) -> dict[str, list[str]]:
    """Reads the standard folds json (`{standard_train_fold: [...], standard_valid_fold: [...], ...}`)."""
    path = epath.Path(path)
    try:
        folds = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MsaDataError(f"{path}: not valid json ({e}).") from e
    out = {}
    for split, needles in (
        ("train", ("train",)),
        ("validation", ("valid", "dev")),
        ("test", ("test",)),
    ):
        keys = [k for k in folds if any(n in k.lower() for n in needles)]
        if len(keys) != 1 or not isinstance(folds[keys[0]], list):
            raise MsaDataError(
                f"{path}: expected one list of video ids whose key contains {needles} "
                f"(e.g. 'standard_{needles[0]}_fold'); keys present: {sorted(folds)}."
            )
        out[split] = [str(v) for v in folds[keys[0]]]
    seen = {}
    for split, videos in out.items():
        for video in videos:
            if video in seen and seen[video] != split:
                raise MsaDataError(
                    f"{path}: video '{video}' is in both the {seen[video]} and {split} folds."
                )
            seen[video] = split
    return out


def word_intervals(intervals: np.ndarray, shift: int) -> np.ndarray:
    """The interval of each word when the `.csd` pairs word i with interval i - `shift` (see `MsaConfig`).

    With `shift = 1` word i takes interval i-1; the first word, whose interval is not in the file, gets the
    zero-length interval at the start of interval 0.
    """
    if shift == 0 or len(intervals) == 0:
        return intervals
    if shift != 1:
        raise ValueError(f"word_interval_shift must be 0 or 1, got {shift}.")
    first = np.array([[intervals[0, 0], intervals[0, 0]]])
    return np.concatenate([first, intervals[:-1]], axis=0)


def segment_word_indices(
    words: np.ndarray, intervals: np.ndarray, start: float, end: float
) -> np.ndarray:
    """Indices (in order) of the words of a segment: the words that START inside it
    (start - tol <= w_start < end - tol), `sp` (silence) dropped. A word belongs to exactly one of two adjacent
    segments."""
    tol = INTERVAL_TOLERANCE
    inside = np.flatnonzero((intervals[:, 0] >= start - tol) & (intervals[:, 0] < end - tol))
    return np.array([i for i in inside if words[i].lower() != "sp"], dtype=np.int64)


def segment_words(words: np.ndarray, intervals: np.ndarray, start: float, end: float) -> str:
    """The text of a segment: its words (`segment_word_indices`), lower-cased, joined by spaces."""
    return " ".join(words[i].lower() for i in segment_word_indices(words, intervals, start, end))


def segment_frames(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """Indices of the feature frames that overlap a segment by more than the tolerance
    (f_start < end - tol and f_end > start + tol): a frame on the segment boundary goes with the segment
    that holds more than a rounding error of it."""
    tol = INTERVAL_TOLERANCE
    return np.flatnonzero((intervals[:, 0] < end - tol) & (intervals[:, 1] > start + tol))


def align_to_words(values: np.ndarray, intervals: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Word-aligned features: one row per word interval, the mean of the frames that overlap it.

    The rule (the one `segment_frames` uses for segments): frame `[f0, f1]` overlaps word `[w0, w1]` when
    `f0 < w1 - tol` and `f1 > w0 + tol` (tol = `INTERVAL_TOLERANCE`), so a frame that only touches a word's
    boundary does not count, and a zero-length word interval takes the frame that contains its instant. A word
    that no frame overlaps (a gap in the features, or a word on a frame boundary) takes the frame nearest to
    it in time (interval distance `max(f0 - w1, w0 - f1, 0)`, the earlier frame on ties). A per-segment
    vector (one frame spanning the segment) therefore repeats for every word of the segment.

    Args:
        values: (n, d) frames (n >= 1; finite or not: the caller checks the result).
        intervals: (n, 2) frame intervals in seconds.
        words: (w, 2) word intervals in seconds.

    Returns:
        float32 (w, d).
    """
    values = np.asarray(values, dtype=np.float64)
    intervals = np.asarray(intervals, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64).reshape(-1, 2)
    if values.shape[0] == 0:
        raise ValueError("align_to_words needs at least one frame")
    tol = INTERVAL_TOLERANCE
    overlap = (intervals[None, :, 0] < words[:, None, 1] - tol) & (
        intervals[None, :, 1] > words[:, None, 0] + tol
    )  # (w, n)
    means = np.empty((words.shape[0], values.shape[1]), np.float64)
    for i, row in enumerate(overlap):
        frames = np.flatnonzero(row)
        if frames.size == 0:  # nearest frame in time
            gap = np.maximum(
                np.maximum(intervals[:, 0] - words[i, 1], words[i, 0] - intervals[:, 1]), 0.0
            )
            frames = [int(np.argmin(gap))]
        means[i] = values[frames].mean(axis=0)
    return means.astype(np.float32)


def check_word_rows(frames: np.ndarray, text: str, *, where: str, key: str) -> None:
    """Word-aligned features must have exactly one row per whitespace word of `text`."""
    words = len(text.split())
    if frames.shape[0] != words:
        raise MsaDataError(
            f"{where}, key '{key}': {frames.shape[0]} word-aligned rows, but the text has {words} "
            f"whitespace words ({text!r}); expected shape ({words}, {frames.shape[1]})."
        )


def sdk_examples(
    *,
    labels_path: epath.Path,
    words_path: epath.Path,
    folds_path: epath.Path,
    sequences: dict[str, tuple[epath.Path, int]],
    label_column: int,
    word_interval_shift: int,
    fix_nonfinite: bool,
    label_range: float,
    align: str = "none",
) -> dict[str, list[tuple[str, dict]]]:
    """Reads SDK files into `{split: [(id, example), ...]}`.

    Segment k (1-based) of a video is row k-1 of the label sequence, id `<video>_<k>`, label =
    `features[k-1, label_column]`; its text is `segment_words`. `sequences` maps "audio"/"vision" to
    `(path, dim)`. A sequence whose intervals for a video are exactly the label intervals (one row per
    segment, like the bc-LSTM utterance vectors) gives segment k its row k; any other sequence is cut per
    segment by `segment_frames` (overlap). A video absent from a feature sequence, or a
    segment with no frame, gets one all-zero frame (counted in a warning). `-inf` in audio becomes 0 (as MMSA
    does); other non-finite values are an error unless `fix_nonfinite` (then they become 0 too).
    Labelled videos in no fold are skipped (warning).

    `align="words"`: each segment's audio/vision get one row per word of its text (the words
    `segment_word_indices` keeps, in order), the mean of the frames that overlap the word's interval
    (`align_to_words`: nearest frame when none overlaps). The candidate frames are the segment's own row for a
    per-segment sequence (so the utterance vector repeats per word) and every frame of the video otherwise
    (a word's frames may reach past its segment's end). `-inf` audio becomes 0 (and with `fix_nonfinite`
    any non-finite value 0) before averaging. A video absent from the sequence gives zero rows, and a segment
    without words has 0 rows. The row count is checked against the text's whitespace words.
    """
    if align not in ("none", "words"):
        raise ValueError(f"sdk_examples: align must be 'none' or 'words', got {align!r}")
    labels = read_csd(labels_path)
    words = read_csd(words_path)
    folds = read_folds(folds_path)
    video_split = {v: s for s, videos in folds.items() for v in videos}
    out = {s: [] for s in SPLITS}
    filled = dict.fromkeys(sequences, 0)
    fixed = dict.fromkeys(sequences, 0)
    with contextlib.ExitStack() as stack:
        features = {
            name: stack.enter_context(CsdFile(path)) for name, (path, _) in sequences.items()
        }
        for video in sorted(labels):
            split = video_split.get(video)
            if split is None:
                continue
            label_values, label_intervals = labels[video]
            if not 0 <= label_column < label_values.shape[1]:
                raise MsaDataError(
                    f"{labels_path}: video '{video}': label_column {label_column} out of range for features "
                    f"of shape {label_values.shape}."
                )
            if video not in words:
                raise MsaDataError(
                    f"{words_path}: no words for video '{video}' (labelled in {labels_path})."
                )
            word_values, raw_word_intervals = words[video]
            word_texts = np.array([_as_str(w) for w in word_values[:, 0]], dtype=object)
            w_intervals = word_intervals(raw_word_intervals, word_interval_shift)
            video_features = {}
            for name, (path, dim) in sequences.items():
                if video not in features[name]:
                    video_features[name] = None
                    continue
                values, intervals = features[name][video]
                if values.shape[1] != dim:
                    raise MsaDataError(
                        f"{path}: video '{video}', key '{name}': expected features of shape (n, {dim}), got "
                        f"{values.shape}; set the config's {name}_dim to the sequence's dimension."
                    )
                # One row per label segment with the label intervals (e.g. the bc-LSTM utterance vectors):
                # segment k takes row k. MOSI segments overlap and repeat, so cutting such a sequence by
                # interval would hand a neighbour's row to a segment.
                per_segment = intervals.shape == label_intervals.shape and np.allclose(
                    intervals, label_intervals, rtol=0.0, atol=INTERVAL_TOLERANCE
                )
                video_features[name] = (values, intervals, per_segment)
            for row, (start, end) in enumerate(label_intervals):
                clip_id = f"{video}_{row + 1}"
                kept = segment_word_indices(word_texts, w_intervals, start, end)
                example = {
                    "id": clip_id,
                    "text": " ".join(word_texts[i].lower() for i in kept),
                    "label": _check_label(
                        label_values[row, label_column],
                        label_range=label_range,
                        where=f"{labels_path}: video '{video}', segment {row + 1}",
                        key="features",
                    ),
                }
                for name, (path, dim) in sequences.items():
                    where = f"{path}: video '{video}', segment {row + 1} ({start:.3f}-{end:.3f} s)"
                    if align == "words":
                        example[name] = _word_rows(
                            video_features[name],
                            row,
                            w_intervals[kept],
                            name=name,
                            dim=dim,
                            fix_nonfinite=fix_nonfinite,
                            counts=(filled, fixed),
                        )
                        _finite_or_raise(
                            example[name],
                            where=f"{where}, clip '{clip_id}'",
                            key=name,
                            expected=f"features of shape (words, {dim}) (or set fix_nonfinite=True)",
                        )
                        check_word_rows(
                            example[name],
                            example["text"],
                            where=f"{where}, clip '{clip_id}'",
                            key=name,
                        )
                        continue
                    frames = np.zeros((0, dim), np.float32)
                    if video_features[name] is not None:
                        values, intervals, per_segment = video_features[name]
                        rows = [row] if per_segment else segment_frames(intervals, start, end)
                        frames = np.asarray(values[rows], dtype=np.float32)
                    if frames.shape[0] == 0:
                        filled[name] += 1
                        frames = np.zeros((1, dim), np.float32)
                    if name == "audio":
                        frames = np.where(frames == -np.inf, np.float32(0.0), frames)
                    if fix_nonfinite and not np.all(np.isfinite(frames)):
                        fixed[name] += 1
                        frames = np.where(np.isfinite(frames), frames, np.float32(0.0))
                    _finite_or_raise(
                        frames,
                        where=where,
                        key=name,
                        expected=f"features of shape (T, {dim}) (or set fix_nonfinite=True)",
                    )
                    example[name] = np.ascontiguousarray(frames)
                out[split].append((clip_id, example))
    missing_in_folds = sorted(set(labels) - set(video_split))
    if missing_in_folds:
        logging.warning(
            "%s: %d labelled videos are in no fold and were skipped: %s",
            folds_path,
            len(missing_in_folds),
            missing_in_folds[:10],
        )
    missing_labels = sorted(set(video_split) - set(labels))
    if missing_labels:
        logging.warning(
            "%s: %d fold videos have no labels in %s: %s",
            folds_path,
            len(missing_labels),
            labels_path,
            missing_labels[:10],
        )
    for name, (path, _) in sequences.items():
        if filled[name]:
            logging.warning(
                "%s: %d segments had no %s frame; %s.",
                path,
                filled[name],
                name,
                "their words got zero rows" if align == "words" else "each got one zero frame",
            )
        if fixed[name]:
            logging.warning(
                "%s: %d segments had non-finite %s values, set to 0.", path, fixed[name], name
            )
    return out


def _word_rows(features, row, words, *, name, dim, fix_nonfinite, counts):
    """One segment's word-aligned rows of one sequence (see `sdk_examples`, `align="words"`)."""
    filled, fixed = counts
    if (
        features is None or len(features[0]) == 0
    ):  # the video is absent from the sequence (or empty)
        if len(words):
            filled[name] += 1
        return np.zeros((len(words), dim), np.float32)
    if len(words) == 0:
        return np.zeros((0, dim), np.float32)
    values, intervals, per_segment = features
    if per_segment:
        values, intervals = values[row : row + 1], intervals[row : row + 1]
    values = np.asarray(values, np.float32)
    if name == "audio":
        values = np.where(values == -np.inf, np.float32(0.0), values)
    rows = align_to_words(values, intervals, words)
    if fix_nonfinite and not np.all(np.isfinite(rows)):  # a frame that a word uses is not finite
        fixed[name] += 1
        rows = align_to_words(
            np.where(np.isfinite(values), values, np.float32(0.0)), intervals, words
        )
    return np.ascontiguousarray(rows)


# ----------------------------------------------------------------------------------------------------------
# label.csv


def label_csv_examples(
    path: epath.Path, *, unimodal_labels: bool, label_range: float
) -> dict[str, list[tuple[str, dict]]]:
    """Reads a label csv into `{split: [(id, example), ...]}` (text + label(s) + split).

    Two layouts: MMSA's `video_id, clip_id, text, label, [label_T, label_A, label_V, annotation,] mode`
    (id = `video_id$_$clip_id`, as in MMSA's pickles) and the simple `id, text, label, mode`.
    `mode` is train / valid | dev | validation / test.
    """
    path = epath.Path(path)
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    columns = [c.strip() for c in (rows.fieldnames or [])]
    rows.fieldnames = columns
    if "id" in columns:
        id_columns = ("id",)
    elif "video_id" in columns and "clip_id" in columns:
        id_columns = ("video_id", "clip_id")
    else:
        id_columns = None
    needed = ["text", "label", "mode"] + ([f"label_{m}" for m in "TAV"] if unimodal_labels else [])
    missing = [c for c in needed if c not in columns]
    if id_columns is None or missing:
        raise MsaDataError(
            f"{path}: expected columns 'id,text,label,mode' or MMSA's 'video_id,clip_id,text,label,"
            f"{'label_T,label_A,label_V,' if unimodal_labels else ''}...,mode'; got {columns}."
        )
    out = {s: [] for s in SPLITS}
    seen = set()
    for line, row in enumerate(rows, start=2):
        where = f"{path}: line {line}"
        if id_columns == ("id",):
            clip_id = row["id"].strip()
        else:
            clip_id = f"{row['video_id'].strip()}$_${row['clip_id'].strip()}"
        mode = (row["mode"] or "").strip().lower()
        if mode not in CSV_MODES:
            raise MsaDataError(
                f"{where}, key 'mode': {row['mode']!r} is not one of {sorted(CSV_MODES)}."
            )
        if clip_id in seen:
            raise MsaDataError(f"{where}, key 'id': duplicate id {clip_id!r}.")
        seen.add(clip_id)

        def number(key: str, clip_id=clip_id, row=row, where=where):
            try:
                value = float(row[key])
            except (TypeError, ValueError):
                raise MsaDataError(f"{where}, key '{key}': {row[key]!r} is not a number.") from None
            return _check_label(
                value, label_range=label_range, where=f"{where} ({clip_id})", key=key
            )

        example = {"id": clip_id, "text": (row["text"] or "").strip(), "label": number("label")}
        if unimodal_labels:
            for m in "TAV":
                example[f"label_{m}"] = number(f"label_{m}")
        out[CSV_MODES[mode]].append((clip_id, example))
    return out
