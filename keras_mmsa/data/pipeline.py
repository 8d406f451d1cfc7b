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

Lengths `L_t`, `T_a`, `T_v` default to the builder config's `text_len`, `audio_len`, `vision_len` (MOSI 50 /
375 / 500, ...); `max_lengths={"audio": 200}` overrides any of them. Only the batch dimension is dynamic (and only
in a last partial batch; `drop_remainder=True` makes it static too), so an XLA-compiled step traces at most twice.

`with_metadata=True` yields `(inputs, label, metadata)` with `metadata = {"id": string [B], "text": string [B]}`
for explanation tables: iterate it, or predict with `model.predict(ds.map(lambda x, y, meta: x))` (string
tensors cannot enter an XLA-compiled step; with `shuffle=False` the order is stable, so predictions line up with
the ids). It is off by default because `fit`/`evaluate` would read a third element as sample weights.

The padding/tokenizing logic is `batch_examples(examples, ...)`, a function over any `tf.data.Dataset` of per-example
dicts shaped like the builder's features, so it is usable (and tested) without TFDS.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from keras_mmsa.data.spec import MODALITIES

_SPLIT_ALIASES = {
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "validation": "valid",
}
DEFAULT_SHUFFLE_BUFFER = 4096


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
    return DatasetInfo(
        name=config.name,
        family=config.family,
        modalities=_modalities_of(keys),
        audio_dim=config.audio_dim if "audio" in keys else None,
        vision_dim=config.vision_dim if "vision" in keys else None,
        text_len=_int_or_none(config.text_len),
        audio_len=_int_or_none(config.audio_len) if "audio" in keys else None,
        vision_len=_int_or_none(config.vision_len) if "vision" in keys else None,
        label_range=float(config.label_range),
        has_bert_ids="bert_ids" in keys,
        num_examples=num_examples,
    )


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
    pieces = tokenizer(texts)
    if isinstance(
        pieces, (list, tuple)
    ):  # KerasHub gives Python lists for ragged output outside tf.data
        pieces = tf.ragged.constant([list(row) for row in pieces], dtype=tf.int32, ragged_rank=1)
    elif not isinstance(pieces, tf.RaggedTensor):
        pieces = tf.RaggedTensor.from_tensor(pieces, padding=pad)
    pieces = tf.cast(pieces[:, : sequence_length - 2], tf.int32)
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


def batch_examples(
    examples,
    *,
    batch_size,
    lengths,
    modalities=None,
    tokenizer=None,
    use_stored_ids=False,
    shuffle=False,
    seed=0,
    shuffle_buffer=None,
    drop_remainder=False,
    with_metadata=False,
    check_numerics=True,
    dataset_name="examples",
):
    """Pad, tokenize and batch a `tf.data.Dataset` of per-example dicts (the builder's features).

    Args:
        examples: unbatched dataset of dicts with some of `text` (string), `bert_ids` (int32 [L]),
            `audio` (float32 [T_a, D_a]), `vision` (float32 [T_v, D_v]), `label` (float32), `id` (string).
        batch_size: int.
        lengths: dict with the padded lengths of the selected modalities: "text", "audio", "vision".
        modalities: the modalities to emit (any subset of ("text", "audio", "vision")); None = all present.
        tokenizer: a KerasHub tokenizer (needed for text unless `use_stored_ids`).
        use_stored_ids: bool. Take the text keys from `bert_ids` instead of tokenizing `text`.
        shuffle, seed, shuffle_buffer: seeded shuffling of examples (reshuffled each epoch, deterministically).
        drop_remainder: bool. Drop the last partial batch (fully static shapes).
        with_metadata: bool. Yield `(inputs, label, {"id", "text"})` instead of `(inputs, label)`.
        check_numerics: bool. Fail (naming the dataset and key) on NaN/inf features or labels.
        dataset_name: used in error messages.

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
    use_text = "text" in modalities
    if use_text and use_stored_ids and "bert_ids" not in spec:
        raise ValueError(
            f"Dataset {dataset_name!r} stores no 'bert_ids' (features: {sorted(spec)})."
        )
    if use_text and not use_stored_ids:
        if "text" not in spec:
            raise ValueError(
                f"Dataset {dataset_name!r} has only stored 'bert_ids' and no raw 'text': use a "
                f"bert-base-uncased tokenizer (stored ids) or a dataset with transcripts."
            )
        if tokenizer is None:
            raise ValueError("a tokenizer is needed for the text modality (text_backbone=...)")
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
    for key in [m for m in modalities if m in ("text", "audio", "vision")]:
        if key not in lengths or lengths[key] is None or int(lengths[key]) < 1:
            raise ValueError(f"a padded length >= 1 is needed for {key!r}; got lengths={lengths}")
    end_id = _special_ids(tokenizer)[1] if (use_stored_ids and tokenizer is not None) else 102

    def per_example(example):
        inputs = {}
        if use_text and use_stored_ids:
            ids = _pad_ids(example["bert_ids"], int(lengths["text"]), end_id)
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
                inputs[modality], inputs[f"{modality}_lengths"] = _pad_frames(
                    frames, int(lengths[modality]), dims[modality]
                )
        label = tf.cast(example["label"], tf.float32)
        if check_numerics:
            label = tf.debugging.check_numerics(
                label, f"dataset {dataset_name!r}, key 'label': NaN or inf"
            )
        carry = {}
        if use_text and not use_stored_ids:
            carry["text"] = example["text"]
        if with_metadata:
            carry["id"] = example["id"]
            carry["text"] = example["text"]
        return inputs, label, carry

    ds = examples
    if shuffle:
        buffer = shuffle_buffer or DEFAULT_SHUFFLE_BUFFER
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(per_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def per_batch(inputs, label, carry):
        inputs = dict(inputs)
        if use_text and not use_stored_ids:
            inputs.update(tokenize_batch(tokenizer, carry["text"], int(lengths["text"])))
        ordered = {key: inputs[key] for key in _ordered_keys(modalities)}
        if with_metadata:
            return ordered, label, {"id": carry["id"], "text": carry["text"]}
        return ordered, label

    ds = ds.map(per_batch, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


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
        max_lengths: optional dict overriding the config's padded lengths, e.g. {"audio": 200}.
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

    Returns:
        `tf.data.Dataset` of `(inputs, label)` batches as `keras_mmsa/data/spec.py` documents.
    """
    import tensorflow_datasets as tfds

    # Everything that can be checked before building is checked first (modalities, tokenizer, lengths).
    builder = get_builder(dataset, data_dir=data_dir)
    info = dataset_info(builder)
    name = info.name
    keys = _feature_keys(builder)
    wanted = _check_modalities(modalities, info.modalities, name, keys)
    lengths = dict(info.lengths)
    if max_lengths:
        unknown = set(max_lengths) - set(MODALITIES)
        if unknown:
            raise ValueError(f"max_lengths keys must be in {MODALITIES}; got {sorted(unknown)}")
        lengths.update({k: int(v) for k, v in max_lengths.items() if v is not None})
    tokenizer = _resolve_tokenizer(text_backbone) if "text" in wanted else None
    stored = "text" in wanted and _wants_stored_ids(
        use_stored_ids, tokenizer, builder, "bert_ids" in keys
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
        shuffle_files=shuffle,
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
    )
