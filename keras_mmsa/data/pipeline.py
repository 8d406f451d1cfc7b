"""The tf.data input pipeline: TFDS `msa` examples -> batched `(inputs, label)` with static shapes.

`load(dataset, split, batch_size)` builds/prepares the TFDS dataset `msa/<config>` if needed, reads one split,
and yields batches of the model inputs dict documented once in `keras_mmsa/data/spec.py`:

* text: `token_ids` int32 [B, L_t] = `[CLS] pieces [SEP]` then 0-padding (the pad id of the tokenizer), cut to
  `L_t - 2` pieces; `padding_mask` bool [B, L_t] True on `[CLS]`, pieces and `[SEP]`; `segment_ids` int32 zeros.
  A tokenizer whose class sets `specials_at_end = True` (XLNet's, `keras_mmsa.backbones.XLNetTokenizer`) gets
  XLNet's layout instead: `pieces <sep> <cls>` then right padding (so `<cls>` is the last real token, at
  `sum(padding_mask) - 1`), and `segment_ids` `cls_segment_id` (2) on `<cls>`, 0 elsewhere.
  Tokens come from the chosen backbone's tokenizer (`text_backbone`, default `"tiny"`). When the dataset stores
  MMSA's `bert_ids` and the tokenizer is bert-base-uncased's vocabulary (checked by a fingerprint of the whole
  vocabulary, `keras_mmsa.backbones.is_bert_base_uncased_vocabulary`), the stored ids are used as they are
  (`use_stored_ids="auto"`), padded/cut to `L_t` (a cut sequence ends in `[SEP]` again); padding_mask = id != 0.
* audio / vision: float32 [B, T, D], cut to the first `T` frames and zero-padded at the end;
  `audio_lengths` / `vision_lengths` int32 [B] = number of valid frames clamped to [1, T]. **An empty sequence**
  (0 frames) becomes one all-zero frame with length 1, so an LSTM over it and a mean over its valid frames are
  defined (no 0/0); the model sees "no information", not a NaN.
* label: float32 [B].

**Aligned data** (`dataset_info(...).aligned`; the contract of word-aligned models such as EF-LSTM, MFN, MAG-BERT):
audio/vision hold ONE FRAME PER TEXT TOKEN POSITION, `[B, L_t, D]`, frame t belonging to token t; special-token
positions ([CLS]/[SEP], or XLNet's `<sep> <cls>` at the end) and padding are zeros; `audio_lengths` /
`vision_lengths` = the number of real tokens (= `padding_mask.sum(1)`). Their padded length is the text length
(`max_lengths={"text": ...}` sets all three).

* alignment "words" (`sample_aligned`, `mosi_sdk_aligned`, `sdk_config(..., align="words")`): the builder stores
  one row per whitespace word of `text`; `expand_word_frames` tokenizes the words one by one with the run's
  tokenizer, repeats each word's row over its pieces, and places the pieces on the token positions that are
  real and not special, found from the tokenizer's own output (so a tokenizer that puts its special tokens at
  the end works too). Text truncation cuts the frames at the same piece. The pieces of the words one by one
  must equal the tokens of the whole text (true of WordPiece; checked in the graph: a mismatch is an error,
  never a silent shift).
* alignment "tokens" (MMSA's `mosi_aligned`, `mosei_aligned`): the frames belong to the stored `bert_ids`, so
  those ids are used (they need a bert-base-uncased tokenizer); asking for another tokenizer with audio/vision
  raises a ValueError. Frames at stored [CLS]/[SEP]/padding positions are zeroed.

Lengths `L_t`, `T_a`, `T_v` default to the builder config's `text_len`, `audio_len`, `vision_len` (MOSI 50 /
375 / 500, ...); `max_lengths={"audio": 200}` overrides any of them. Only the batch dimension is dynamic (and only
in a last partial batch; `drop_remainder=True` makes it static too), so an XLA-compiled step traces at most twice.

`with_metadata=True` yields `(inputs, label, metadata)` with `metadata = {"id": string [B], "text": string [B]}`
for explanation tables: iterate it, or predict with `model.predict(ds.map(lambda x, y, meta: x))` (string
tensors cannot enter an XLA-compiled step; with `shuffle=False` the order is stable, so predictions line up with
the ids). It is off by default because `fit`/`evaluate` would read a third element as sample weights.

`compute_text_features` / `attach_text_features` add a frozen text backbone's token states to the examples
(`inputs["text_features"]`, a training-time input: `keras_mmsa.training.run.cache_text_features`).

The padding/tokenizing logic is `batch_examples(examples, ...)`, a function over any `tf.data.Dataset` of per-example
dicts shaped like the builder's features, so it is usable (and tested) without TFDS.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_mmsa.data.spec import INDEX_KEY, MODALITIES, UNIMODAL_LABEL_KEYS

_SPLIT_ALIASES = {
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "validation": "valid",
}
DEFAULT_SHUFFLE_BUFFER = 4096
# Feature name of an example's position while `batch_examples(with_index=True)` carries it to `inputs["index"]`.
_POSITION = "_position"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before seeing a batch (from the builder config).

    Attributes:
        name: config name, e.g. "mosi_unaligned".
        family: "mosi" | "mosei" | "sims": decides the metric set and the label range.
        modalities: the modalities the dataset has, a subset of ("text", "audio", "vision").
        audio_dim, vision_dim: feature sizes (None when the modality is absent).
        text_len, audio_len, vision_len: default padded lengths of the pipeline.
        label_range: 3.0 (labels in [-3, 3]) or 1.0 (SIMS).
        has_bert_ids: the examples store MMSA's BERT ids.
        num_examples: split name -> size, when the dataset is already prepared in `data_dir` (else None).
        alignment: "none", "words" or "tokens" (see the module docs).
        aligned: the loader yields token-aligned audio/vision (alignment "words" or "tokens"): one frame per
            text token, `audio_len == vision_len == text_len`.
        unimodal_labels: the examples carry per-modality labels `label_T`, `label_A`, `label_V` (SIMS:
            human annotations; `sample`: planted), which `load(..., unimodal_labels=True)` adds to the inputs.
    """

    name: str
    family: str
    modalities: tuple
    audio_dim: int | None
    vision_dim: int | None
    text_len: int
    audio_len: int | None
    vision_len: int | None
    label_range: float
    has_bert_ids: bool
    num_examples: dict | None = None
    alignment: str = "none"
    aligned: bool = False
    unimodal_labels: bool = False

    @property
    def lengths(self):
        return {"text": self.text_len, "audio": self.audio_len, "vision": self.vision_len}


def default_data_dir():
    """`$KMSA_DATA_DIR`, else `~/tensorflow_datasets`."""
    return os.environ.get("KMSA_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets"
    )


def _builder_module():
    from keras_mmsa_datasets.msa import msa_dataset_builder

    return msa_dataset_builder


def _data_dir(data_dir):
    return os.path.expanduser(os.fspath(data_dir)) if data_dir else default_data_dir()


def get_builder(dataset, *, data_dir=None):
    """The TFDS `msa` builder (not prepared) for a config name, an `MsaConfig`, or a builder (returned as is)."""
    import tensorflow_datasets as tfds

    if isinstance(dataset, tfds.core.DatasetBuilder):
        return dataset
    module = _builder_module()
    return module.Builder(config=module.get_config(dataset), data_dir=_data_dir(data_dir))


def prepare_builder(dataset, *, data_dir=None, manual_dir=None):
    """Build `dataset` offline into `data_dir` unless it is built from the same sources; returns the builder.

    An `msa` dataset prepared earlier is checked against `manual_dir` (its files' names, sizes and content) or,
    for `sample`, against the generator: the same sources reuse it, changed ones prepare it again (see
    `keras_mmsa_datasets.msa.ensure_prepared`). Preparing leaves the global random state as it was.
    """
    import tensorflow_datasets as tfds

    module = _builder_module()
    if isinstance(dataset, module.Builder):
        return module.ensure_prepared(dataset, manual_dir=manual_dir)
    if isinstance(dataset, tfds.core.DatasetBuilder):
        if not dataset.is_prepared():
            dataset.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=os.path.expanduser(os.fspath(manual_dir)) if manual_dir else None,
                    try_download_gcs=False,
                )
            )
        return dataset
    return module.prepare(dataset, manual_dir=manual_dir, data_dir=_data_dir(data_dir))


def _feature_keys(builder):
    return set(builder.info.features.keys())


def _modalities_of(keys):
    present = []
    if "text" in keys or "bert_ids" in keys:
        present.append("text")
    for modality in ("audio", "vision"):
        if modality in keys:
            present.append(modality)
    return tuple(present)


def dataset_info(dataset, *, data_dir=None):
    """`DatasetInfo` of a dataset config name / config object / builder, without building it."""
    builder = get_builder(dataset, data_dir=data_dir)
    config = builder.builder_config
    keys = _feature_keys(builder)
    num_examples = None
    # (`is_prepared` alone warns about a version folder that does not exist yet)
    if builder.data_path.exists() and builder.is_prepared():
        num_examples = {name: split.num_examples for name, split in builder.info.splits.items()}
    alignment = _alignment_of(config)
    aligned = alignment != "none"
    text_len = _int_or_none(config.text_len)
    return DatasetInfo(
        name=config.name,
        family=config.family,
        modalities=_modalities_of(keys),
        audio_dim=config.audio_dim if "audio" in keys else None,
        vision_dim=config.vision_dim if "vision" in keys else None,
        text_len=text_len,
        audio_len=(text_len if aligned else _int_or_none(config.audio_len))
        if "audio" in keys
        else None,
        vision_len=(text_len if aligned else _int_or_none(config.vision_len))
        if "vision" in keys
        else None,
        label_range=float(config.label_range),
        has_bert_ids="bert_ids" in keys,
        num_examples=num_examples,
        alignment=alignment,
        aligned=aligned,
        unimodal_labels=all(k in keys for k in UNIMODAL_LABEL_KEYS),
    )


def _alignment_of(config):
    alignment = getattr(config, "alignment", None)
    if alignment is None:  # a builder config without the field (e.g. another TFDS builder)
        alignment = "tokens" if getattr(config, "aligned", False) else "none"
    return alignment


def _int_or_none(value):
    return None if value is None else int(value)


def _resolve_tokenizer(text_backbone):
    from keras_mmsa import backbones

    if text_backbone is None:
        return None
    if isinstance(text_backbone, (str, os.PathLike)):
        return backbones.load_text_tokenizer(text_backbone)
    if isinstance(text_backbone, tuple) and len(text_backbone) == 2:  # (backbone, tokenizer)
        return text_backbone[1]
    if callable(text_backbone):
        return text_backbone
    raise TypeError(
        "text_backbone must be 'tiny', a KerasHub preset name, a directory, a tokenizer, or a "
        f"(backbone, tokenizer) pair; got {type(text_backbone).__name__}"
    )


def _special_ids(tokenizer):
    def first(*names):
        for name in names:
            value = getattr(tokenizer, name, None)
            if value is not None:
                return int(value)
        return None

    start = first("cls_token_id", "start_token_id")
    end = first("sep_token_id", "end_token_id")
    pad = first("pad_token_id")
    if start is None or end is None or pad is None:
        raise ValueError(
            f"The tokenizer {type(tokenizer).__name__} does not define the start/[CLS], end/[SEP] and pad "
            f"token ids the pipeline needs (start={start}, end={end}, pad={pad})."
        )
    return start, end, pad


def tokenize_batch(tokenizer, texts, sequence_length):
    """Tokenize a batch of strings [B] into the text keys: `[CLS] pieces [SEP]` + padding, static length.

    Tokenizers with `specials_at_end` (XLNet) give `pieces <sep> <cls>` + padding instead, with segment id
    `cls_segment_id` on `<cls>` (see the module docstring).

    Returns `{"token_ids": int32 [B, L], "padding_mask": bool [B, L], "segment_ids": int32 [B, L]}`.
    """
    if sequence_length < 2:
        raise ValueError(f"text length must be >= 2 ([CLS] and [SEP]); got {sequence_length}")
    start, end, pad = _special_ids(tokenizer)
    texts = tf.convert_to_tensor(texts, tf.string)
    pieces = _ragged_pieces(tokenizer, texts, pad)
    pieces = pieces[:, : sequence_length - 2]
    batch = tf.shape(texts)[0]
    column = tf.ones([batch, 1], tf.int32)
    at_end = bool(getattr(tokenizer, "specials_at_end", False))
    if at_end:  # XLNet: A <sep> <cls>
        packed = tf.concat([pieces, column * end, column * start], axis=1)
    else:  # BERT: [CLS] A [SEP]
        packed = tf.concat([column * start, pieces, column * end], axis=1)
    token_ids = packed.to_tensor(default_value=pad, shape=[None, sequence_length])
    lengths = packed.row_lengths()
    padding_mask = tf.sequence_mask(lengths, sequence_length)
    segment_ids = tf.zeros_like(token_ids)
    if at_end:
        cls_segment = int(getattr(tokenizer, "cls_segment_id", 0))
        last = tf.one_hot(tf.cast(lengths - 1, tf.int32), sequence_length, dtype=tf.int32)
        segment_ids = last * cls_segment
    return {
        "token_ids": token_ids,
        "padding_mask": padding_mask,
        "segment_ids": segment_ids,
    }


def _ragged_pieces(tokenizer, texts, pad):
    """`tokenizer(texts)` for a 1-D string tensor as an int32 RaggedTensor [N, (P)]."""
    pieces = tokenizer(texts)
    if isinstance(
        pieces, (list, tuple)
    ):  # KerasHub gives Python lists for ragged output outside tf.data
        pieces = tf.ragged.constant(
            [list(row) for row in pieces], dtype=tf.int32, ragged_rank=1, row_splits_dtype=tf.int64
        )
        if pieces.shape.rank == 1:  # all rows empty: tf.ragged.constant cannot tell the rank
            pieces = tf.RaggedTensor.from_row_lengths(
                tf.zeros([0], tf.int32), tf.zeros([len(texts)], tf.int64)
            )
    elif not isinstance(pieces, tf.RaggedTensor):
        pieces = tf.RaggedTensor.from_tensor(pieces, padding=pad)
    return tf.cast(pieces, tf.int32)


def special_token_ids(tokenizer):
    """The ids a tokenizer's packer adds around the pieces ([CLS]/[SEP]/pad, `<cls>`/`<sep>`/`<pad>`, ...):
    its `special_token_ids` and its start/end/cls/sep/bos/eos/pad ids, never its unknown-token id (a word the
    vocabulary lacks is a real token)."""
    ids = {int(i) for i in (getattr(tokenizer, "special_token_ids", None) or ())}
    for name in (
        "cls_token_id",
        "sep_token_id",
        "start_token_id",
        "end_token_id",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ):
        value = getattr(tokenizer, name, None)
        if value is not None:
            ids.add(int(value))
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids.discard(None if unknown is None else int(unknown))
    return sorted(ids)


def _assert_in_graph(value, checks):
    """`value` after the (condition, message) checks have run (tf.data graphs keep only used ops)."""
    asserts = [tf.debugging.Assert(c, [tf.constant(m)]) for c, m in checks]
    with tf.control_dependencies(asserts):
        return tf.identity(value)


def expand_word_frames(
    tokenizer, texts, word_frames, token_ids, padding_mask, *, dataset_name="examples"
):
    """Word-level audio/vision -> one frame per token position of `token_ids` (the aligned-input contract).

    The texts' whitespace words are tokenized one by one; word w's row is repeated over its pieces; the pieces
    are laid, in order, on the positions that are real (`padding_mask`) and not special tokens
    (`special_token_ids(tokenizer)`), so the special tokens may sit anywhere (`[CLS] ... [SEP]` or XLNet's
    `... <sep> <cls>`); those positions and padding get zeros. When the text was truncated, the frames are cut
    at the same piece. Works in graph mode (inside `tf.data`).

    Example: the words "good unbelievable" with rows a, b and a tokenizer splitting "unbelievable" into 3 pieces
    give, with `[CLS] good un ##believ ##able [SEP] 0`, the frames `0 a b b b 0 0`.

    Args:
        tokenizer: the tokenizer that made `token_ids` from `texts`.
        texts: string [B].
        word_frames: `{key: float RaggedTensor [B, (W), D]}`, row w of example b = word w of `texts[b]`.
        token_ids: int32 [B, L]; padding_mask: bool [B, L].
        dataset_name: used in error messages.

    Returns:
        `{key: float32 [B, L, D]}`, and `"lengths"`: int32 [B] = `padding_mask.sum(1)`.

    Raises:
        tf.errors.InvalidArgumentError (when run): a row count differs from the text's word count, or the pieces
            of the words one by one are not the tokens of the whole text (the frames would be misplaced).
    """
    pad = int(getattr(tokenizer, "pad_token_id", 0) or 0)
    texts = tf.convert_to_tensor(texts, tf.string)
    token_ids = tf.convert_to_tensor(token_ids, tf.int32)
    padding_mask = tf.convert_to_tensor(padding_mask, tf.bool)
    length = token_ids.shape[1]
    words = tf.strings.split(texts)  # [B, (W)]
    pieces = _ragged_pieces(tokenizer, words.flat_values, pad)  # [N, (P)]
    counts = pieces.row_lengths()  # pieces per word
    n_pieces = tf.reduce_sum(words.with_flat_values(counts), axis=1)  # [B]
    piece_ids = tf.RaggedTensor.from_row_lengths(pieces.flat_values, n_pieces)
    special = tf.constant(special_token_ids(tokenizer), tf.int32)
    content = padding_mask & ~tf.reduce_any(token_ids[..., None] == special, axis=-1)  # [B, L]
    position = tf.maximum(tf.cumsum(tf.cast(content, tf.int32), axis=1) - 1, 0)
    placed = tf.gather(
        piece_ids[:, :length].to_tensor(default_value=-1, shape=[None, length]),
        position,
        batch_dims=1,
    )
    n_content = tf.reduce_sum(tf.cast(content, tf.int64), axis=1)
    full = tf.reduce_all(padding_mask, axis=1)  # truncated texts fill the whole sequence
    same = tf.reduce_all(tf.where(content, placed == token_ids, True)) & tf.reduce_all(
        (n_content == n_pieces) | (full & (n_content < n_pieces))
    )
    content = _assert_in_graph(
        content,
        [
            (
                same,
                f"dataset {dataset_name!r}: word-aligned audio/vision cannot be placed on the tokens: the "
                "tokenizer's pieces of the words one by one differ from its tokens of the whole text",
            )
        ],
    )
    mask = tf.cast(content, tf.float32)[..., None]
    out = {}
    for key, frames in word_frames.items():
        rows = _assert_in_graph(
            frames.flat_values,
            [
                (
                    tf.reduce_all(frames.row_lengths() == words.row_lengths()),
                    f"dataset {dataset_name!r}, key {key!r}: word-aligned features need one row per "
                    "whitespace word of 'text'",
                )
            ],
        )
        dim = frames.shape[-1]
        per_piece = tf.RaggedTensor.from_row_lengths(tf.repeat(rows, counts, axis=0), n_pieces)
        dense = per_piece[:, :length].to_tensor(shape=[None, length, dim])
        out[key] = tf.gather(tf.cast(dense, tf.float32), position, batch_dims=1) * mask
    out["lengths"] = tf.reduce_sum(tf.cast(padding_mask, tf.int32), axis=1)
    return out


def _pad_ids(ids, sequence_length, end_id):
    """Stored [CLS] ... [SEP] ids (0-padded or trimmed) -> fixed length; a cut sequence ends in [SEP] again."""
    ids = tf.cast(ids, tf.int32)
    ids = tf.boolean_mask(ids, ids != 0)
    n = tf.shape(ids)[0]
    cut = ids[:sequence_length]
    cut = tf.cond(
        n > sequence_length,
        lambda: tf.concat([cut[:-1], [end_id]], axis=0),
        lambda: cut,
    )
    padded = tf.pad(cut, [[0, sequence_length - tf.shape(cut)[0]]])
    padded.set_shape([sequence_length])
    return padded


def _pad_frames(frames, length, dim):
    frames = tf.cast(frames, tf.float32)[:length]
    n = tf.shape(frames)[0]
    padded = tf.pad(frames, [[0, length - n], [0, 0]])
    padded.set_shape([length, dim])
    return padded, tf.maximum(n, 1)


def _check_modalities(modalities, available, dataset_name, features):
    """The requested modalities as a tuple (None = all available), or a ValueError saying what exists."""
    if modalities is None:
        return tuple(available)
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise ValueError(
            f"modalities must be a non-empty subset of {MODALITIES}; got {modalities!r}"
        )
    missing = [m for m in modalities if m not in available]
    if missing:
        raise ValueError(
            f"Dataset {dataset_name!r} has no {' or '.join(missing)} modality: it has "
            f"{', '.join(available) or 'none'} (features: {sorted(features)}). Choose modalities from "
            f"{tuple(available)}."
        )
    return modalities


def _describe(spec):
    return {key: (s.dtype.name, s.shape.as_list()) for key, s in spec.items()}


ALIGNMENTS = ("none", "words", "tokens")
# Special ids of bert-base-uncased ([PAD], [CLS], [SEP]): the stored ids of MMSA's aligned pickles.
_BERT_SPECIAL_IDS = (0, 101, 102)


def batch_examples(
    examples,
    *,
    batch_size,
    lengths,
    modalities=None,
    tokenizer=None,
    use_stored_ids=False,
    alignment="none",
    shuffle=False,
    seed=0,
    shuffle_buffer=None,
    drop_remainder=False,
    with_metadata=False,
    check_numerics=True,
    dataset_name="examples",
    with_index=False,
    unimodal_labels=False,
):
    """Pad, tokenize and batch a `tf.data.Dataset` of per-example dicts (the builder's features).

    Args:
        examples: unbatched dataset of dicts with some of `text` (string), `bert_ids` (int32 [L]),
            `audio` (float32 [T_a, D_a]), `vision` (float32 [T_v, D_v]), `label` (float32), `id` (string).
        batch_size: int.
        lengths: dict with the padded lengths of the selected modalities: "text", "audio", "vision" (aligned
            data: "text" only; audio/vision follow it).
        modalities: the modalities to emit (any subset of ("text", "audio", "vision")); None = all present.
        tokenizer: a KerasHub tokenizer (needed for text unless `use_stored_ids`, and for "words" data).
        use_stored_ids: bool. Take the text keys from `bert_ids` instead of tokenizing `text`.
        alignment: "none"; "words" (audio/vision rows are the whitespace words of `text`: expanded to one
            frame per token, see `expand_word_frames`); "tokens" (audio/vision rows are the stored `bert_ids`
            tokens: needs `use_stored_ids` when text is emitted too).
        shuffle, seed, shuffle_buffer: seeded shuffling of examples (reshuffled each epoch, deterministically).
        drop_remainder: bool. Drop the last partial batch (fully static shapes).
        with_metadata: bool. Yield `(inputs, label, {"id", "text"})` instead of `(inputs, label)`.
        check_numerics: bool. Fail (naming the dataset and key) on NaN/inf features or labels.
        dataset_name: used in error messages.
        with_index: bool. Add `inputs["index"]` (int32): each example's position in `examples` as read,
            numbered before any shuffling, so the same example keeps its index in every epoch and run (the key of
            per-example state such as Self-MM's label memories; `examples` must be read in a fixed order).
        unimodal_labels: bool. Add `inputs["label_T"]`, `["label_A"]`, `["label_V"]` (float32) from the
            examples' per-modality labels (SIMS, `sample`); an error naming the dataset when it has none.

    Returns:
        A `tf.data.Dataset` of `(inputs, label)` (or `(inputs, label, metadata)`) batches, prefetched.
    """
    spec = examples.element_spec
    if not isinstance(spec, dict):
        raise TypeError(f"{dataset_name}: expected a dataset of feature dicts, got {spec}")
    modalities = _check_modalities(
        modalities, _modalities_of(spec.keys()), dataset_name, spec.keys()
    )
    if "label" not in spec:
        raise ValueError(
            f"Dataset {dataset_name!r} has no 'label' feature (features: {sorted(spec)})."
        )
    if unimodal_labels and not all(k in spec for k in UNIMODAL_LABEL_KEYS):
        raise ValueError(
            f"Dataset {dataset_name!r} has no unimodal labels {list(UNIMODAL_LABEL_KEYS)} (features: "
            f"{sorted(spec)}); SIMS configs and the synthetic 'sample' sets carry them."
        )
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}; got {alignment!r}")
    use_text = "text" in modalities
    aligned = [m for m in ("audio", "vision") if m in modalities] if alignment != "none" else []
    words = alignment == "words" and bool(aligned)
    if aligned and alignment == "tokens" and use_text and not use_stored_ids:
        raise ValueError(
            f"Dataset {dataset_name!r} has audio/vision aligned to its stored bert_ids tokens; tokenizing the "
            "text again would misalign them: use the stored ids (a bert-base-uncased tokenizer), or leave "
            "text or audio/vision out (modalities=...)."
        )
    if use_text and use_stored_ids and "bert_ids" not in spec:
        raise ValueError(
            f"Dataset {dataset_name!r} stores no 'bert_ids' (features: {sorted(spec)})."
        )
    if (use_text and not use_stored_ids) or words:
        if "text" not in spec:
            raise ValueError(
                f"Dataset {dataset_name!r} has only stored 'bert_ids' and no raw 'text': use a "
                f"bert-base-uncased tokenizer (stored ids) or a dataset with transcripts."
            )
        if tokenizer is None:
            raise ValueError(
                "a tokenizer is needed for the text modality (text_backbone=...)"
                if use_text
                else f"Dataset {dataset_name!r} is word-aligned: a tokenizer (text_backbone=...) is "
                "needed to give its audio/vision one frame per text token"
            )
    if with_metadata and not {"id", "text"} <= set(spec):
        raise ValueError(
            f"with_metadata=True needs 'id' and 'text' features; {dataset_name!r} has {sorted(spec)}"
        )
    dims = {}
    for modality in ("audio", "vision"):
        if modality in modalities:
            shape = spec[modality].shape
            if shape.rank != 2 or shape[-1] is None:
                raise ValueError(
                    f"Dataset {dataset_name!r}, key {modality!r}: expected float [T, D] with a known D, "
                    f"got {_describe(spec)[modality]}"
                )
            dims[modality] = int(shape[-1])
    lengths = dict(lengths)
    if aligned:
        text_len = lengths.get("text")
        for m in aligned:
            if lengths.get(m) is not None and text_len is not None and lengths[m] != text_len:
                raise ValueError(
                    f"Dataset {dataset_name!r} is aligned (one {m} frame per text token): its {m} length "
                    f"is the text length {text_len}, got lengths[{m!r}]={lengths[m]}; set the text length "
                    "instead"
                )
            lengths[m] = text_len
    needed = [m for m in modalities if m in ("text", "audio", "vision")] + (
        ["text"] if aligned else []
    )
    for key in needed:
        if key not in lengths or lengths[key] is None or int(lengths[key]) < 1:
            raise ValueError(f"a padded length >= 1 is needed for {key!r}; got lengths={lengths}")
    if words and int(lengths["text"]) < 2:
        raise ValueError(f"text length must be >= 2 ([CLS] and [SEP]); got {lengths['text']}")
    end_id = _special_ids(tokenizer)[1] if (use_stored_ids and tokenizer is not None) else 102
    stored_special = (
        special_token_ids(tokenizer)
        if use_stored_ids and tokenizer is not None
        else list(_BERT_SPECIAL_IDS)
    )

    def per_example(example):
        inputs = {}
        ids = None
        if "bert_ids" in example and (
            (use_text and use_stored_ids) or (aligned and alignment == "tokens")
        ):
            ids = _pad_ids(example["bert_ids"], int(lengths["text"]), end_id)
        if use_text and use_stored_ids:
            inputs["token_ids"] = ids
            inputs["padding_mask"] = ids != 0
            inputs["segment_ids"] = tf.zeros_like(ids)
        for modality in ("audio", "vision"):
            if modality in modalities:
                frames = example[modality]
                if check_numerics:
                    frames = tf.debugging.check_numerics(
                        tf.cast(frames, tf.float32),
                        f"dataset {dataset_name!r}, key {modality!r}: NaN or inf in the features",
                    )
                if words:  # expanded per batch, after tokenization
                    inputs[modality] = tf.cast(frames, tf.float32)
                    continue
                inputs[modality], inputs[f"{modality}_lengths"] = _pad_frames(
                    frames, int(lengths[modality]), dims[modality]
                )
                if aligned and ids is not None:  # "tokens": zeros at stored [CLS]/[SEP]/padding
                    real = ~tf.reduce_any(ids[:, None] == tf.constant(stored_special, tf.int32), -1)
                    inputs[modality] *= tf.cast(real, tf.float32)[:, None]
                    inputs[f"{modality}_lengths"] = tf.reduce_sum(tf.cast(ids != 0, tf.int32))
        label = tf.cast(example["label"], tf.float32)
        if check_numerics:
            label = tf.debugging.check_numerics(
                label, f"dataset {dataset_name!r}, key 'label': NaN or inf"
            )
        if with_index:
            inputs[INDEX_KEY] = tf.cast(example[_POSITION], tf.int32)
        if unimodal_labels:
            for key in UNIMODAL_LABEL_KEYS:
                value = tf.cast(example[key], tf.float32)
                if check_numerics:
                    value = tf.debugging.check_numerics(
                        value, f"dataset {dataset_name!r}, key {key!r}: NaN or inf"
                    )
                inputs[key] = value
        carry = {}
        if (use_text and not use_stored_ids) or words:
            carry["text"] = example["text"]
        if with_metadata:
            carry["id"] = example["id"]
            carry["text"] = example["text"]
        return inputs, label, carry

    ds = examples
    if with_index:  # numbered as read, before shuffling: an example's index is the same every epoch
        ds = ds.enumerate().map(lambda i, example: {**example, _POSITION: i})
    if shuffle:
        buffer = shuffle_buffer or DEFAULT_SHUFFLE_BUFFER
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(per_example, num_parallel_calls=tf.data.AUTOTUNE)
    if words:  # word rows vary in number: ragged batches
        ds = ds.ragged_batch(batch_size, drop_remainder=drop_remainder)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def per_batch(inputs, label, carry):
        inputs = dict(inputs)
        if (use_text and not use_stored_ids) or words:
            text = tokenize_batch(tokenizer, carry["text"], int(lengths["text"]))
            if use_text and not use_stored_ids:
                inputs.update(text)
        if words:
            expanded = expand_word_frames(
                tokenizer,
                carry["text"],
                {m: inputs[m] for m in aligned},
                text["token_ids"],
                text["padding_mask"],
                dataset_name=dataset_name,
            )
            for m in aligned:
                inputs[m] = expanded[m]
                inputs[f"{m}_lengths"] = expanded["lengths"]
        extra = ([INDEX_KEY] if with_index else []) + (
            list(UNIMODAL_LABEL_KEYS) if unimodal_labels else []
        )
        ordered = {key: inputs[key] for key in _ordered_keys(modalities) + extra}
        if with_metadata:
            return ordered, label, {"id": carry["id"], "text": carry["text"]}
        return ordered, label

    ds = ds.map(per_batch, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def compute_text_features(dataset, encode):
    """`encode(inputs)` ([B, L_t, H]) for every batch of a batched `(inputs, label)` dataset, as one float32
    numpy array [N, L_t, H] in the dataset's order (computed eagerly, on the default device)."""
    out = [np.asarray(encode(batch[0]), dtype=np.float32) for batch in dataset]
    if not out:
        raise ValueError("compute_text_features: the dataset is empty")
    return np.concatenate(out)


def attach_text_features(examples, features):
    """An unbatched `(inputs, label)` dataset with `inputs["text_features"] = features[i]` for its i-th element.

    `features` ([N, L_t, H], from `compute_text_features` over the same elements in the same order) is read
    through a generator, so it never becomes a graph constant (no 2 GB limit); `.cache()` the result.
    """
    from keras_mmsa.data.spec import TEXT_FEATURES

    features = np.asarray(features, dtype=np.float32)
    rows = tf.data.Dataset.from_generator(
        lambda: iter(features), output_signature=tf.TensorSpec(features.shape[1:], tf.float32)
    )

    def merge(example, row):
        inputs, *rest = example
        return ({**inputs, TEXT_FEATURES: row}, *rest)

    # (a generator's cardinality is unknown: state it, so Keras counts steps as for the plain dataset)
    return (
        tf.data.Dataset.zip(examples, rows)
        .map(merge)
        .apply(tf.data.experimental.assert_cardinality(len(features)))
    )


def _ordered_keys(modalities):
    from keras_mmsa.data.spec import MODALITY_KEYS

    return [
        key for modality in MODALITIES if modality in modalities for key in MODALITY_KEYS[modality]
    ]


def _resolve_split(builder, split):
    names = set(builder.info.splits.keys())
    base = split.split("[", 1)[0]
    if base in names:
        return split
    alias = _SPLIT_ALIASES.get(base)
    if alias in names:
        return alias + split[len(base) :]
    raise ValueError(
        f"Dataset {builder.builder_config.name!r} has no split {split!r}; it has {sorted(names)}"
    )


def _wants_stored_ids(use_stored_ids, tokenizer, builder, has_bert_ids):
    from keras_mmsa import backbones

    vocabulary = getattr(builder.builder_config, "bert_vocabulary", None)
    if vocabulary is None:
        vocabulary = (
            "bert-base-chinese" if builder.builder_config.family == "sims" else "bert-base-uncased"
        )
    matches = (
        has_bert_ids
        and vocabulary == "bert-base-uncased"
        and tokenizer is not None
        and backbones.is_bert_base_uncased_vocabulary(tokenizer)
    )
    if use_stored_ids == "auto":
        return matches
    if use_stored_ids and not matches:
        raise ValueError(
            f"use_stored_ids=True, but dataset {builder.builder_config.name!r} "
            + (
                "stores no bert_ids"
                if not has_bert_ids
                else f"stores {vocabulary} ids and the tokenizer is not bert-base-uncased's vocabulary"
            )
        )
    return bool(use_stored_ids)


def load(
    dataset,
    split,
    batch_size,
    *,
    text_backbone="tiny",
    modalities=None,
    max_lengths=None,
    shuffle=True,
    seed=0,
    shuffle_buffer=None,
    drop_remainder=False,
    data_dir=None,
    manual_dir=None,
    with_metadata=False,
    use_stored_ids="auto",
    check_numerics=True,
    with_index=False,
    unimodal_labels=False,
):
    """A batched `tf.data.Dataset` of `(inputs, label)` for one split of a TFDS `msa` dataset.

    Args:
        dataset: a config name of the TFDS builder `msa` ("sample", "mosi_unaligned", "mosi_sdk", ...), a
            builder config object (e.g. from `keras_mmsa_datasets.msa.sdk_config(...)`) or a builder.
        split: "train", "validation" (aliases "valid", "dev") or "test"; TFDS slicing ("train[:10%]") works.
        batch_size: int.
        text_backbone: whose tokenizer makes the text keys: "tiny" (default), a KerasHub preset name, a local
            preset / Hugging-Face directory, a tokenizer object, or a `(backbone, tokenizer)` pair.
        modalities: any subset of ("text", "audio", "vision"); None (default) = every modality the dataset has.
            A modality the dataset lacks raises a ValueError naming the dataset and what it has.
        max_lengths: optional dict overriding the config's padded lengths, e.g. {"audio": 200}. Aligned
            data (`dataset_info(...).aligned`): audio/vision follow the text length.
        shuffle: bool. Seeded shuffling (a different, reproducible order each epoch). Default True.
        seed: int. Shuffling seed.
        shuffle_buffer: int. Default min(split size, 4096) examples.
        drop_remainder: bool. Drop the last partial batch.
        data_dir: where TFDS keeps prepared data (default `$KMSA_DATA_DIR` or `~/tensorflow_datasets`).
        manual_dir: folder with the user's files (MMSA pickles, SDK .csd files, label.csv); not needed for
            "sample".
        with_metadata: bool. Also yield `{"id", "text"}` per batch, as a third element (see the module docs).
        use_stored_ids: "auto" (default): stored `bert_ids` when the tokenizer has bert-base-uncased's
            vocabulary; True: require them; False: always tokenize the raw text.
        check_numerics: bool. Fail with the dataset and key on NaN/inf features (default True).
        with_index: bool. Add `inputs["index"]` int32 [B], the example's position in the split (stable across
            epochs and runs; the split's files are then read in their fixed order, and `shuffle` shuffles the
            examples only). A training-time key: never part of an exported model's inputs.
        unimodal_labels: bool. Add `inputs["label_T"]`, `["label_A"]`, `["label_V"]` float32 [B] (datasets
            with `dataset_info(...).unimodal_labels`: SIMS, `sample`).

    Returns:
        `tf.data.Dataset` of `(inputs, label)` batches as `keras_mmsa/data/spec.py` documents (aligned data:
        one audio/vision frame per token, see the module docs).

    Raises:
        ValueError: before anything is built, for a modality the dataset lacks, a bad length, or token-aligned
            data (MMSA's aligned pickles) with a tokenizer other than its stored ids' (they would misalign).
    """
    import tensorflow_datasets as tfds

    # Everything that can be checked before building is checked first (modalities, tokenizer, lengths).
    builder = get_builder(dataset, data_dir=data_dir)
    info = dataset_info(builder)
    name = info.name
    keys = _feature_keys(builder)
    wanted = _check_modalities(modalities, info.modalities, name, keys)
    lengths = padded_lengths(info, max_lengths)
    aligned_frames = info.aligned and any(m in wanted for m in ("audio", "vision"))
    needs_tokenizer = "text" in wanted or (aligned_frames and info.alignment == "words")
    tokenizer = _resolve_tokenizer(text_backbone) if needs_tokenizer else None
    stored = "text" in wanted and _wants_stored_ids(
        use_stored_ids, tokenizer, builder, "bert_ids" in keys
    )
    if aligned_frames and info.alignment == "tokens" and "text" in wanted and not stored:
        raise ValueError(
            f"Dataset {name!r} has audio/vision aligned to its stored bert-base-uncased token ids "
            f"(alignment 'tokens'); the tokenizer {type(tokenizer).__name__} does not have "
            "bert-base-uncased's vocabulary"
            + (" (or use_stored_ids=False was asked)" if use_stored_ids is False else "")
            + ", so its tokens would not line up with the frames. Use text_backbone="
            "'bert_base_en_uncased' (or a local preset with that vocabulary, e.g. MiniLM), a dataset with "
            "its own alignment ('mosi_sdk_aligned', 'sample_aligned') or an unaligned one, or leave text or "
            "audio/vision out (modalities=...)."
        )
    builder = prepare_builder(builder, manual_dir=manual_dir)
    info = dataset_info(builder)
    split = _resolve_split(builder, split)
    # Ordered, deterministic reading: the same examples in the same order whether this process prepared the
    # data or found it prepared (files shuffled only when asked, with the seed).
    read_options = tf.data.Options()
    read_options.deterministic = True
    examples = builder.as_dataset(
        split=split,
        shuffle_files=shuffle and not with_index,
        read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False, options=read_options),
    )
    if shuffle_buffer is None:
        size = (info.num_examples or {}).get(split.split("[", 1)[0])
        shuffle_buffer = min(size or DEFAULT_SHUFFLE_BUFFER, DEFAULT_SHUFFLE_BUFFER)
    return batch_examples(
        examples,
        batch_size=batch_size,
        lengths=lengths,
        modalities=wanted,
        tokenizer=tokenizer,
        use_stored_ids=stored,
        shuffle=shuffle,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        drop_remainder=drop_remainder,
        with_metadata=with_metadata,
        check_numerics=check_numerics,
        dataset_name=name,
        alignment=info.alignment,
        with_index=with_index,
        unimodal_labels=unimodal_labels,
    )


def padded_lengths(info, max_lengths=None):
    """`{"text", "audio", "vision"}` padded lengths of a run: the dataset's (`DatasetInfo`), overridden by
    `max_lengths`; aligned audio/vision follow the text length (a different audio/vision override is an
    error)."""
    lengths = dict(info.lengths)
    if not max_lengths:
        return lengths
    unknown = set(max_lengths) - set(MODALITIES)
    if unknown:
        raise ValueError(f"max_lengths keys must be in {MODALITIES}; got {sorted(unknown)}")
    given = {k: int(v) for k, v in max_lengths.items() if v is not None}
    lengths.update(given)
    if getattr(info, "aligned", False):
        for m in ("audio", "vision"):
            if m in given and given[m] != lengths["text"]:
                raise ValueError(
                    f"Dataset {info.name!r} is aligned (one {m} frame per text token): max_lengths[{m!r}]="
                    f"{given[m]} must equal the text length {lengths['text']}; set max_lengths['text'] "
                    "instead"
                )
            if lengths.get(m) is not None:
                lengths[m] = lengths["text"]
    return lengths
