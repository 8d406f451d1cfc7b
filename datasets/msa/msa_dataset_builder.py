"""msa: CMU-MOSI, CMU-MOSEI and CH-SIMS for multimodal sentiment analysis, plus a synthetic `sample`.

One config per dataset x alignment x source (see `MsaConfig` and the dataset README). The configs carry what the
input pipeline needs (`family` -> metric set, default padded lengths, feature dims, label range).

Prepared data stays tied to its sources: a prepared config records what it was made from (`provenance`), every
`prepare` compares that record with the manual directory it is given, reuses the data when the files are the
same (wherever they are), prepares again when they changed, and refuses a same-named config with other fields.
Preparing leaves Python's and NumPy's global random state as it found it.

Offline by construction: making a `Builder` never looks TFDS's GCS bucket up (TFDS's switch is held off while the
builder is made, then restored; importing this module changes no TFDS state), `prepare` passes
`try_download_gcs=False`, nothing is downloaded, and every config except `sample` reads files the user placed in
the manual directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from keras_mmsa_datasets.msa import provenance, readers, sample
from tensorflow_datasets.core.utils import gcs_utils

SOURCES = ("sample", "pickle", "sdk", "label_csv")
# How audio/vision line up with the text: "none" (frame sequences of their own length), "words" (one row per
# whitespace word of `text`; the pipeline repeats each over the word's tokens), "tokens" (one frame per stored
# BERT token of `bert_ids`: MMSA's aligned pickles).
ALIGNMENTS = ("none", "words", "tokens")
FAMILIES = ("mosi", "mosei", "sims")
FAMILY_FOLDERS = {"mosi": "MOSI", "mosei": "MOSEI", "sims": "SIMS"}
LABEL_RANGES = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}
# (text_len, audio_len, vision_len) MMSA pads to; aligned data has one frame per text token.
UNALIGNED_LENGTHS = {"mosi": (50, 375, 500), "mosei": (50, 500, 500), "sims": (39, 400, 55)}
ALIGNED_LENGTHS = {"mosi": (50, 50, 50), "mosei": (50, 50, 50)}
# (audio_dim, vision_dim) of MMSA's pickles.
FEATURE_DIMS = {"mosi": (5, 20), "mosei": (74, 35), "sims": (33, 709)}

MOSI_SDK_FILES = {
    "labels_csd": "CMU_MOSI_Opinion_Labels.csd",
    "words_csd": "CMU_MOSI_ModifiedTimestampedWords.csd",
    "folds_json": "cmu_mosi_std_folds.json",
}
MOSEI_SDK_FILES = {
    "labels_csd": "CMU_MOSEI_Labels.csd",
    "words_csd": "CMU_MOSEI_TimestampedWords.csd",
    "folds_json": "cmu_mosei_std_folds.json",
}
SDK_FILES = {"mosi": MOSI_SDK_FILES, "mosei": MOSEI_SDK_FILES}
# `CMU_MOSI_ModifiedTimestampedWords.csd` stores word i with the interval of word i-1 (measured on the real
# file: with the shift 92% of segment texts equal MMSA's label.csv, without it 0%); the SDK's other word
# files are not shifted.
SDK_WORD_SHIFTS = {"CMU_MOSI_ModifiedTimestampedWords.csd": 1}


@dataclasses.dataclass(eq=False, kw_only=True)
class MsaConfig(tfds.core.BuilderConfig):
    """A config of the `msa` builder: where the data comes from and what the pipeline needs to know.

    Args:
        name: config name (also the TFDS sub-directory: make custom names unique).
        source: "pickle" (MMSA feature pickle), "sdk" (CMU-MultimodalSDK `.csd` files), "label_csv"
            (text + labels only) or "sample" (synthetic, no files).
        family: "mosi", "mosei" or "sims": the label range and the metric set follow from it.
        aligned: audio/vision aligned with the text: MMSA's `aligned_50.pkl` (pickle source, aligned to the
            stored BERT tokens) or word-aligned SDK / sample data.
        alignment: "none", "words" or "tokens" (default: "tokens" for an aligned pickle, "words" for aligned
            SDK / sample data, else "none"; giving it sets `aligned`). "words": audio/vision hold one row per
            whitespace word of `text` (SDK: the mean of the frames overlapping the word's interval, see
            `readers.align_to_words`); "tokens": one frame per stored BERT token of `bert_ids`. `label_csv`
            sources have no audio/vision: nothing to align.
        pickle_file: pickle source: file name in the manual directory.
        label_csv_file: label_csv source: file name in the manual directory.
        labels_csd, words_csd, folds_json: sdk source: label and word sequences, standard folds json.
        audio_csd, vision_csd: sdk source: optional feature sequences (None = modality absent).
        audio_dim, vision_dim: feature dimension, None when the config has no such modality.
        text_len, audio_len, vision_len: default padded lengths for the pipeline (None when absent).
        label_range: labels lie in [-label_range, label_range] (3 for MOSI/MOSEI, 1 for SIMS); checked.
        unimodal_labels: the examples carry `label_T`, `label_A`, `label_V` (SIMS: human; `sample`: planted).
        bert_ids: pickle source: emit `bert_ids` from the file's `text_bert` (required then).
        bert_vocabulary: the WordPiece vocabulary of `bert_ids` ("bert-base-uncased" for MMSA's MOSI/MOSEI,
            "bert-base-chinese" for SIMS), so the pipeline can tell whether the stored ids fit its tokenizer.
        label_column: sdk source: column of the label sequence holding the sentiment score.
        word_interval_shift: sdk source: 1 if the words file pairs word i with the interval of word i-1
            (true of `CMU_MOSI_ModifiedTimestampedWords.csd`), else 0.
        fix_nonfinite: sdk source: set NaN/inf feature values to 0 instead of failing (-inf audio always
            becomes 0, as in MMSA).
        num_examples: sample source: (train, validation, test) sizes.
        seed: sample source: generator seed.
    """

    source: str
    family: str = "mosi"
    aligned: bool = False
    alignment: str | None = None
    pickle_file: str | None = None
    label_csv_file: str | None = None
    labels_csd: str | None = None
    words_csd: str | None = None
    folds_json: str | None = None
    audio_csd: str | None = None
    vision_csd: str | None = None
    audio_dim: int | None = None
    vision_dim: int | None = None
    text_len: int = 50
    audio_len: int | None = None
    vision_len: int | None = None
    label_range: float | None = None
    unimodal_labels: bool = False
    bert_ids: bool = False
    bert_vocabulary: str | None = None
    label_column: int = 0
    word_interval_shift: int = 0
    fix_nonfinite: bool = False
    num_examples: tuple[int, int, int] = (600, 150, 150)
    seed: int = 20240

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(
                f"MsaConfig {self.name!r}: source must be one of {SOURCES}, got {self.source!r}."
            )
        if self.family not in FAMILIES:
            raise ValueError(
                f"MsaConfig {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}."
            )
        if self.label_range is None:
            self.label_range = LABEL_RANGES[self.family]
        kind = {"pickle": "tokens", "sdk": "words", "sample": "words", "label_csv": None}[
            self.source
        ]
        if self.alignment is None:
            self.alignment = kind if self.aligned and kind else "none"
        if self.alignment not in ALIGNMENTS:
            raise ValueError(
                f"MsaConfig {self.name!r}: alignment must be one of {ALIGNMENTS}, got {self.alignment!r}."
            )
        if self.alignment != "none" and self.alignment != kind:
            raise ValueError(
                f"MsaConfig {self.name!r}: a {self.source!r} config cannot be {self.alignment!r}-aligned"
                + (
                    " (it has no audio/vision: nothing to align)."
                    if kind is None
                    else f" (only 'none' or {kind!r})."
                )
            )
        self.aligned = self.alignment != "none"
        required = {
            "pickle": ("pickle_file",),
            "sdk": ("labels_csd", "words_csd", "folds_json"),
            "label_csv": ("label_csv_file",),
            "sample": (),
        }[self.source]
        for field in required:
            if not getattr(self, field):
                raise ValueError(
                    f"MsaConfig {self.name!r}: source {self.source!r} needs `{field}`."
                )
        for modality in ("audio", "vision"):
            dim, length = getattr(self, f"{modality}_dim"), getattr(self, f"{modality}_len")
            if (dim is None) != (length is None):
                raise ValueError(
                    f"MsaConfig {self.name!r}: give both {modality}_dim and {modality}_len, or neither."
                )
            if self.source == "sdk" and (dim is None) != (getattr(self, f"{modality}_csd") is None):
                raise ValueError(
                    f"MsaConfig {self.name!r}: give both {modality}_csd and {modality}_dim, or neither."
                )
            if self.source == "label_csv" and dim is not None:
                raise ValueError(f"MsaConfig {self.name!r}: a label_csv config has no {modality}.")
            if self.source in ("pickle", "sample") and dim is None:
                raise ValueError(
                    f"MsaConfig {self.name!r}: source {self.source!r} needs {modality}_dim."
                )
        if self.word_interval_shift not in (0, 1):
            raise ValueError(f"MsaConfig {self.name!r}: word_interval_shift must be 0 or 1.")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the examples carry, in ("text", "audio", "vision") order."""
        present = {
            "text": True,
            "audio": self.audio_dim is not None,
            "vision": self.vision_dim is not None,
        }
        return tuple(m for m, on in present.items() if on)

    @property
    def manual_files(self) -> tuple[str, ...]:
        """The files this config reads from the manual directory."""
        names = (
            self.pickle_file,
            self.label_csv_file,
            self.labels_csd,
            self.words_csd,
            self.folds_json,
            self.audio_csd,
            self.vision_csd,
        )
        return tuple(n for n in names if n) if self.source != "sample" else ()


def _pickle_config(family: str, aligned: bool, file: str) -> MsaConfig:
    text_len, audio_len, vision_len = (ALIGNED_LENGTHS if aligned else UNALIGNED_LENGTHS)[family]
    audio_dim, vision_dim = FEATURE_DIMS[family]
    return MsaConfig(
        name=f"{family}_{'aligned' if aligned else 'unaligned'}",
        description=(
            f"{FAMILY_FOLDERS[family]} MMSA feature pickle `{file}` ({'word-aligned' if aligned else 'unaligned'}"
            f"; audio {audio_dim}-d, vision {vision_dim}-d, BERT ids)."
        ),
        source="pickle",
        family=family,
        aligned=aligned,
        pickle_file=file,
        audio_dim=audio_dim,
        vision_dim=vision_dim,
        text_len=text_len,
        audio_len=audio_len,
        vision_len=vision_len,
        unimodal_labels=family == "sims",
        bert_ids=True,
        bert_vocabulary="bert-base-chinese" if family == "sims" else "bert-base-uncased",
    )


def _label_csv_config(family: str) -> MsaConfig:
    return MsaConfig(
        name=f"{family}_label_csv",
        description=f"{FAMILY_FOLDERS[family]} `label.csv` alone: transcripts, labels and the standard split.",
        source="label_csv",
        family=family,
        label_csv_file="label.csv",
        text_len=UNALIGNED_LENGTHS[family][0],
        unimodal_labels=family == "sims",
    )


def sdk_config(
    name: str,
    *,
    family: str = "mosi",
    labels_csd: str | None = None,
    words_csd: str | None = None,
    folds_json: str | None = None,
    audio_csd: str | None = None,
    audio_dim: int | None = None,
    audio_len: int | None = None,
    vision_csd: str | None = None,
    vision_dim: int | None = None,
    vision_len: int | None = None,
    text_len: int = 50,
    label_column: int = 0,
    word_interval_shift: int | None = None,
    fix_nonfinite: bool = False,
    align: str = "none",
    description: str | None = None,
) -> MsaConfig:
    """A config over CMU-MultimodalSDK computational sequences, with the feature sequences you name.

    Labels, timestamped words and the folds json default to the family's standard files
    (`SDK_FILES[family]`); `word_interval_shift` defaults to the known shift of the words file
    (`SDK_WORD_SHIFTS`, else 0). Any acoustic/visual `.csd` may be named with its feature dimension; the padded
    length defaults to MMSA's unaligned length of the family (pass `audio_len=1` for one vector per segment).

    `align="words"` makes the audio/vision of each segment one row per word of its text: the mean of the
    frames that overlap the word's interval; a word that no frame overlaps takes the nearest frame in time
    (`readers.align_to_words`). A per-segment vector (one frame spanning the segment) repeats per word. The
    pipeline then repeats each word's row over the word's tokens (`keras_mmsa.data.load`), so word-aligned
    models (EF-LSTM, MFN, MAG-BERT) train on the config; the padded audio/vision lengths are the text length.

    Example:

    ```python
    from keras_mmsa_datasets.msa import prepare, sdk_config

    config = sdk_config(
        "mosi_covarep_facet",
        audio_csd="CMU_MOSI_COVAREP.csd", audio_dim=74,
        vision_csd="CMU_MOSI_Visual_Facet_41.csd", vision_dim=35,
    )
    builder = prepare(config, manual_dir="~/data/MOSI")  # or tfds.builder("msa", config=config)
    ```

    To read a prepared custom config back, pass the same config object again (TFDS cannot rebuild it from
    its name alone).
    """
    if family not in SDK_FILES:
        raise ValueError(f"sdk_config: family must be one of {sorted(SDK_FILES)}, got {family!r}.")
    if align not in ("none", "words"):
        raise ValueError(f"sdk_config: align must be 'none' or 'words', got {align!r}.")
    defaults = SDK_FILES[family]
    words_csd = words_csd or defaults["words_csd"]
    if word_interval_shift is None:
        word_interval_shift = SDK_WORD_SHIFTS.get(epath.Path(words_csd).name, 0)
    _, default_audio_len, default_vision_len = UNALIGNED_LENGTHS[family]
    if align == "words":  # one frame per text token after the pipeline's expansion
        default_audio_len = default_vision_len = text_len
    if audio_dim is not None and audio_len is None:
        audio_len = default_audio_len
    if vision_dim is not None and vision_len is None:
        vision_len = default_vision_len
    sequences = ", ".join(
        f"{m} `{f}` ({d}-d)"
        for m, f, d in (("audio", audio_csd, audio_dim), ("vision", vision_csd, vision_dim))
        if f
    )
    return MsaConfig(
        name=name,
        description=description
        or f"{FAMILY_FOLDERS[family]} from CMU-MultimodalSDK `.csd` files; {sequences or 'text only'}"
        + ("; word-aligned." if align == "words" else "."),
        source="sdk",
        family=family,
        alignment=align,
        labels_csd=labels_csd or defaults["labels_csd"],
        words_csd=words_csd,
        folds_json=folds_json or defaults["folds_json"],
        audio_csd=audio_csd,
        audio_dim=audio_dim,
        audio_len=audio_len,
        vision_csd=vision_csd,
        vision_dim=vision_dim,
        vision_len=vision_len,
        text_len=text_len,
        label_column=label_column,
        word_interval_shift=word_interval_shift,
        fix_nonfinite=fix_nonfinite,
    )


BUILDER_CONFIGS = [
    MsaConfig(
        name="sample",
        description=(
            "Synthetic MOSI-unaligned-shaped set with a planted text/audio/vision signal and planted "
            "unimodal labels (keras_mmsa_datasets.msa.sample); needs no files."
        ),
        source="sample",
        family="mosi",
        unimodal_labels=True,
        audio_dim=5,
        vision_dim=20,
        text_len=50,
        audio_len=375,
        vision_len=500,
    ),
    MsaConfig(
        name="sample_aligned",
        description=(
            "The synthetic `sample` set, word-aligned: the same clips, texts and labels, audio/vision averaged "
            "per word (one row per word; keras_mmsa_datasets.msa.sample); needs no files."
        ),
        source="sample",
        family="mosi",
        unimodal_labels=True,
        alignment="words",
        audio_dim=5,
        vision_dim=20,
        text_len=50,
        audio_len=50,
        vision_len=50,
    ),
    MsaConfig(
        name="sample_unlabeled",
        description=(
            "More clips of the synthetic `sample` set (same generator and shapes, another seed: other speakers "
            "and sentences), as a pool of unlabeled data for semi-supervised methods (MIRD's Algorithm 1, "
            "`--unlabeled-dataset sample_unlabeled`: the train split, its labels ignored); needs no files."
        ),
        source="sample",
        family="mosi",
        audio_dim=5,
        vision_dim=20,
        text_len=50,
        audio_len=375,
        vision_len=500,
        num_examples=(600, 30, 30),
        seed=20241,
    ),
    _pickle_config("mosi", False, "unaligned_50.pkl"),
    _pickle_config("mosi", True, "aligned_50.pkl"),
    _pickle_config("mosei", False, "unaligned_50.pkl"),
    _pickle_config("mosei", True, "aligned_50.pkl"),
    _pickle_config("sims", False, "unaligned_39.pkl"),
    sdk_config(
        "mosi_sdk",
        audio_csd="CMU_MOSI_bcLSTM_Utterance_Audio.csd",
        audio_dim=73,
        audio_len=1,
        description=(
            "CMU-MOSI from CMU-MultimodalSDK `.csd` files: transcripts from the timestamped words, the "
            "bc-LSTM 73-d utterance-level acoustic vector (one frame per segment), no visual."
        ),
    ),
    sdk_config(
        "mosi_sdk_aligned",
        audio_csd="CMU_MOSI_bcLSTM_Utterance_Audio.csd",
        audio_dim=73,
        align="words",
        description=(
            "`mosi_sdk`, word-aligned: the bc-LSTM 73-d utterance-level acoustic vector repeated for every "
            "word of the segment (one row per word), no visual."
        ),
    ),
    sdk_config(
        "mosei_sdk",
        family="mosei",
        audio_csd="CMU_MOSEI_COVAREP.csd",
        audio_dim=74,
        vision_csd="CMU_MOSEI_VisualFacet42.csd",
        vision_dim=35,
        description=(
            "CMU-MOSEI from CMU-MultimodalSDK `.csd` files: transcripts from the timestamped words, "
            "COVAREP 74-d acoustic and FACET 4.2 35-d visual frames cut per segment."
        ),
    ),
    _label_csv_config("mosi"),
    _label_csv_config("mosei"),
    _label_csv_config("sims"),
]
CONFIGS_BY_NAME = {c.name: c for c in BUILDER_CONFIGS}


def get_config(config: str | MsaConfig) -> MsaConfig:
    """The `MsaConfig` of a config name (or the config itself)."""
    if isinstance(config, MsaConfig):
        return config
    if config not in CONFIGS_BY_NAME:
        raise ValueError(
            f"Unknown msa config {config!r}; known: {sorted(CONFIGS_BY_NAME)} (or pass an MsaConfig)."
        )
    return CONFIGS_BY_NAME[config]


class MissingManualFilesError(FileNotFoundError):
    """A config's source files are not in the manual directory; the message says which and where to get them."""


MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Every config except `sample` reads files you place in a folder and pass as `manual_dir`:
`keras_mmsa_datasets.msa.prepare(config, manual_dir=...)`,
`builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=...))`, or
`scripts/train.py --manual-dir ...`. Each file is looked up in `<manual_dir>/`, `<manual_dir>/Processed/`,
`<manual_dir>/<DATASET>/` and `<manual_dir>/<DATASET>/Processed/` (DATASET = MOSI, MOSEI or SIMS, or lower
case), so MMSA's dataset root and a single dataset folder both work.

* `mosi_unaligned`, `mosi_aligned`: MMSA's processed features `MOSI/Processed/unaligned_50.pkl`,
  `aligned_50.pkl`; `mosei_unaligned`, `mosei_aligned`: `MOSEI/Processed/unaligned_50.pkl`, `aligned_50.pkl`;
  `sims_unaligned`: `SIMS/Processed/unaligned_39.pkl` (download links in the README of
  https://github.com/thuiar/MMSA).
* `mosi_label_csv`, `mosei_label_csv`, `sims_label_csv`: the dataset's `label.csv` (MMSA's
  `video_id,clip_id,text,label,...,mode` or `id,text,label,mode`).
* `mosi_sdk`: CMU-MultimodalSDK computational sequences `CMU_MOSI_Opinion_Labels.csd`,
  `CMU_MOSI_ModifiedTimestampedWords.csd`, `CMU_MOSI_bcLSTM_Utterance_Audio.csd`, and the standard folds as
  `cmu_mosi_std_folds.json`: `{"standard_train_fold": [...], "standard_valid_fold": [...],
  "standard_test_fold": [...]}` (the lists of the SDK's
  `mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSI/cmu_mosi_std_folds.py`).
* `mosei_sdk`: `CMU_MOSEI_Labels.csd`, `CMU_MOSEI_TimestampedWords.csd`, `CMU_MOSEI_COVAREP.csd`,
  `CMU_MOSEI_VisualFacet42.csd` and `cmu_mosei_std_folds.json` (same layout, from the SDK's CMU_MOSEI folds).
* `mosi_sdk_aligned`: the files of `mosi_sdk`.
* `sdk_config(...)` configs: the `.csd` files and folds json they name.
"""


def find_manual_file(manual_dir: epath.PathLike, file: str, family: str) -> epath.Path:
    """Finds `file` in the manual directory (see MANUAL_DOWNLOAD_INSTRUCTIONS for the folders searched)."""
    root = epath.Path(manual_dir)
    folder = FAMILY_FOLDERS[family]
    candidates = [
        base / file
        for base in (root, root / "Processed", root / folder, root / folder / "Processed")
        + (root / folder.lower(), root / folder.lower() / "Processed")
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(file, candidates)


SOURCE_RECORD = "kmsa_sources"  # key of the source record in the prepared dataset's metadata
# Fields that only configure the input pipeline (padded lengths, tokenizer choice), and `alignment`, which
# follows from `source` and `aligned` (both recorded): not part of the record's config fields, so records of
# data prepared before `alignment` existed still match. The alignment is recorded beside them.
_PIPELINE_FIELDS = ("text_len", "audio_len", "vision_len", "bert_vocabulary", "alignment")


def source_record(config: MsaConfig, manual_dir: epath.PathLike | None) -> dict:
    """What `config` prepared from `manual_dir` is made of (see `provenance`); JSON-ready.

    Raises:
        MissingManualFilesError: a file of the config is not in `manual_dir`.
    """
    if manual_dir is not None and "://" not in str(manual_dir):
        manual_dir = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    fields = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in base and f.name not in _PIPELINE_FIELDS
    }
    fields["builder_version"] = str(Builder.VERSION)
    files = {}
    if config.source != "sample" and manual_dir is not None:
        for file in config.manual_files:
            try:
                files[file] = provenance.file_record(
                    find_manual_file(manual_dir, file, config.family)
                )
            except FileNotFoundError as e:
                searched = ", ".join(str(p) for p in e.args[1])
                raise MissingManualFilesError(
                    f"msa config {config.name!r}: {file} not found in {manual_dir} (searched {searched})."
                ) from None
    generator = None
    if config.source == "sample":
        generator = {"sample": provenance.module_digest(sample)}
        if config.alignment == "words":  # the word averaging lives in the readers
            generator["readers"] = provenance.module_digest(readers)
    record = {
        "format": provenance.FORMAT,
        "config": fields,
        "alignment": config.alignment,
        "generator": generator,
        "manual_dir": None if manual_dir is None else str(manual_dir),
        "files": files,
    }
    return json.loads(json.dumps(record))  # tuples -> lists, as the stored record reads back


def stale_reason(builder: Builder, manual_dir: epath.PathLike | None) -> str | None:
    """Why a prepared builder must be prepared again from `manual_dir` (None: its data is current).

    Raises:
        readers.MsaDataError: the prepared data was made from another config of the same name and there is no
            manual directory to prepare it again from.
        MissingManualFilesError: `manual_dir` lacks one of the config's files.
    """
    config = builder.builder_config
    where = f"msa/{config.name} in {builder.data_dir_root}"
    metadata = builder.info.metadata
    recorded = metadata.get(SOURCE_RECORD) if metadata is not None else None
    has_sources = config.source == "sample" or manual_dir is not None
    if recorded is None:
        return (
            f"{where} has no record of its sources (prepared before records)"
            if has_sources
            else None
        )
    current = source_record(config, manual_dir if config.source != "sample" else None)
    diffs = provenance.differences(
        recorded, current, files=config.source != "sample" and has_sources
    )
    if not diffs:
        return None
    before = recorded.get("manual_dir") or "the generator"
    if not has_sources:
        raise readers.MsaDataError(
            f"{where} was prepared from {before} with another config of that name ({'; '.join(diffs)}); pass "
            "its manual dir to prepare it again, or give the config another name."
        )
    now = current["manual_dir"] or "the generator now"
    return f"{where} was prepared from {before}, and {now} differs: {'; '.join(diffs)}"


@contextlib.contextmanager
def _gcs_lookups_disabled():
    """Hold TFDS's GCS switch off for the duration, and give the caller's value back after.

    A builder made for a dataset that is not prepared yet asks GCS (`gs://tfds-data`, a network call) for a
    pre-computed `DatasetInfo` unless the switch is off (`DatasetInfo.initialize_from_bucket`). TFDS 4.9.10 has
    the switch off by default; this keeps the builder offline whatever another library or test set it to,
    without changing it for anyone else.
    """
    saved = gcs_utils._is_gcs_disabled
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = saved


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for msa: CMU-MOSI / CMU-MOSEI / CH-SIMS features, transcripts and labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = BUILDER_CONFIGS
    DEFAULT_BUILDER_CONFIG_NAME = "sample"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def __init__(self, **kwargs):
        with _gcs_lookups_disabled():  # TFDS's constructor is where the GCS look-up happens
            super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        features = {
            "id": tfds.features.Text(),
            "text": tfds.features.Text(),
            "label": tfds.features.Scalar(np.float32),
        }
        if config.source == "pickle" and config.bert_ids:
            features["bert_ids"] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
        if config.audio_dim is not None:
            features["audio"] = tfds.features.Tensor(
                shape=(None, config.audio_dim), dtype=np.float32
            )
        if config.vision_dim is not None:
            features["vision"] = tfds.features.Tensor(
                shape=(None, config.vision_dim), dtype=np.float32
            )
        if config.unimodal_labels:
            for m in "TAV":
                features[f"label_{m}"] = tfds.features.Scalar(np.float32)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            homepage="https://github.com/CMU-MultiComp-Lab/CMU-MultimodalSDK",
            metadata=tfds.core.MetadataDict(),  # holds the source record (see `source_record`)
        )

    def download_and_prepare(self, *args, **kwargs):
        """TFDS's `download_and_prepare`, leaving the global random state as it was (see `provenance`)."""
        with provenance.global_rng_preserved():
            return super().download_and_prepare(*args, **kwargs)

    def _manual_path(self, dl_manager: tfds.download.DownloadManager, file: str) -> epath.Path:
        config = self.builder_config
        help_text = (
            f"msa config {config.name!r} needs {list(config.manual_files)} in the manual directory.\n\n"
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
        try:
            manual_dir = dl_manager.manual_dir
        except (AssertionError, ValueError) as e:  # TFDS: manual dir not given, missing or empty
            raise MissingManualFilesError(f"{e}\n\n{help_text}") from None
        try:
            return find_manual_file(manual_dir, file, config.family)
        except FileNotFoundError as e:
            searched = "\n".join(f"  {p}" for p in e.args[1])
            raise MissingManualFilesError(
                f"{file} not found; searched:\n{searched}\n{help_text}"
            ) from None

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        splits = self._source_splits(dl_manager)
        # Reached once every source file was found; written with the data (metadata.json).
        self.info.metadata[SOURCE_RECORD] = source_record(
            self.builder_config,
            None if self.builder_config.source == "sample" else dl_manager.manual_dir,
        )
        return splits

    def _source_splits(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.source == "sample":
            sizes = dict(zip(readers.SPLITS, config.num_examples))
            return {
                s: self._generate_examples(self._sample_examples(s, sizes[s]))
                for s in readers.SPLITS
            }
        if config.source == "pickle":
            path = self._manual_path(dl_manager, config.pickle_file)
            data = readers.load_pickle(path)
            return {
                split: self._generate_examples(
                    readers.pickle_examples(
                        data,
                        path=str(path),
                        file_split=file_split,
                        aligned=config.aligned,
                        audio_dim=config.audio_dim,
                        vision_dim=config.vision_dim,
                        bert_ids=config.bert_ids,
                        unimodal_labels=config.unimodal_labels,
                        label_range=config.label_range,
                    )
                )
                for file_split, split in readers.PICKLE_SPLITS.items()
            }
        if config.source == "sdk":
            sequences = {}
            for modality in ("audio", "vision"):
                file = getattr(config, f"{modality}_csd")
                if file:
                    sequences[modality] = (
                        self._manual_path(dl_manager, file),
                        getattr(config, f"{modality}_dim"),
                    )
            splits = readers.sdk_examples(
                labels_path=self._manual_path(dl_manager, config.labels_csd),
                words_path=self._manual_path(dl_manager, config.words_csd),
                folds_path=self._manual_path(dl_manager, config.folds_json),
                sequences=sequences,
                label_column=config.label_column,
                word_interval_shift=config.word_interval_shift,
                fix_nonfinite=config.fix_nonfinite,
                label_range=config.label_range,
                align=config.alignment,
            )
        else:  # label_csv
            splits = readers.label_csv_examples(
                self._manual_path(dl_manager, config.label_csv_file),
                unimodal_labels=config.unimodal_labels,
                label_range=config.label_range,
            )
        return {split: self._generate_examples(examples) for split, examples in splits.items()}

    def _sample_examples(self, split: str, num_examples: int):
        for record in sample.generate_split(
            split,
            num_examples=num_examples,
            seed=self.builder_config.seed,
            aligned=self.builder_config.alignment == "words",
        ):
            if (
                not self.builder_config.unimodal_labels
            ):  # a sample-source config without planted labels
                record = {k: v for k, v in record.items() if not k.startswith("label_")}
            yield record["id"], record

    def _generate_examples(self, examples):
        """Yields `(key, example)`; the key is the clip id (unique within a split, checked)."""
        seen = set()
        for key, example in examples:
            if key in seen:
                raise readers.MsaDataError(
                    f"msa config {self.builder_config.name!r}: duplicate clip id {key!r} in one split."
                )
            seen.add(key)
            yield key, example


def prepare(
    config: str | MsaConfig = "sample",
    *,
    manual_dir: epath.PathLike | None = None,
    data_dir: epath.PathLike | None = None,
    overwrite: bool = False,
) -> Builder:
    """Builds a config offline (no GCS, no download) if it is not built yet, and returns its builder.

    Args:
        config: a config name of `BUILDER_CONFIGS` or an `MsaConfig` (e.g. from `sdk_config`).
        manual_dir: folder with the config's source files (see MANUAL_DOWNLOAD_INSTRUCTIONS); unused by `sample`.
        data_dir: TFDS data directory (default: TFDS's, `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
        overwrite: rebuild even if the prepared dataset exists (it is rebuilt anyway when its sources changed:
            see `ensure_prepared`).

    Returns:
        The prepared `Builder`; `builder.as_dataset(split=...)` gives the examples.
    """
    builder = Builder(
        config=get_config(config), data_dir=None if data_dir is None else str(data_dir)
    )
    return ensure_prepared(builder, manual_dir=manual_dir, overwrite=overwrite)


def ensure_prepared(
    builder: Builder, *, manual_dir: epath.PathLike | None = None, overwrite: bool = False
) -> Builder:
    """Prepares `builder` offline unless it holds data made from the same sources; returns a prepared builder.

    A prepared config whose record differs from `manual_dir`'s files (or, for `sample`, from the generator) is
    prepared again, with one warning saying what differs; a broken new file then fails with an error naming
    it. Without a manual directory the files cannot be compared and the prepared data is used as it is.
    Returns `builder`, or a new builder over the re-prepared data.
    """
    # (`is_prepared` alone warns about a version folder that does not exist yet)
    if builder.data_path.exists() and builder.is_prepared() and not overwrite:
        reason = stale_reason(builder, manual_dir)
        if reason is None:
            return builder
        logging.warning("%s; preparing it again.", reason)
        overwrite = True
    if overwrite:
        # A fresh builder: the old one's info and metadata describe the data being replaced.
        builder = Builder(config=builder.builder_config, data_dir=str(builder.data_dir_root))
    mode = (
        tfds.download.GenerateMode.FORCE_REDOWNLOAD
        if overwrite
        else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    download_config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else str(epath.Path(manual_dir).expanduser()),
        try_download_gcs=False,
        download_mode=mode,
    )
    builder.download_and_prepare(download_config=download_config)
    return builder
