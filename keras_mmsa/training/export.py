"""SavedModel export for TF Serving.

Two signatures, both returning `{"sentiment": float32 [B]}`:

- `serve` (the default signature): the model inputs dict of `keras_mmsa/data/spec.py` — `token_ids` int32
  [B, L_t], `padding_mask` bool [B, L_t], `segment_ids` int32 [B, L_t], and for each modality the model uses,
  `audio` float32 [B, T_a, D_a] + `audio_lengths` int32 [B], `vision` float32 [B, T_v, D_v] +
  `vision_lengths` int32 [B]. Sequence lengths are the ones the model was trained with (static, as XLA wants).
- `serve_text`: the same, but the text arrives as raw strings `text` string [B]; the WordPiece tokenizer runs
  inside the graph (its vocabulary is an asset of the SavedModel). Its ops (`NormalizeUTF8`,
  `WordpieceTokenizeWithOffsets`, ...) come from `tensorflow_text`: TF Serving's standard build includes them,
  but plain TensorFlow cannot load the SavedModel (`Op type not registered 'NormalizeUTF8'`) until
  `import tensorflow_text` registers them. `text_signature=False` (`scripts/export.py --features-only`)
  writes `serve` alone, which loads with TensorFlow only.

Word-aligned runs (`dataset_info(...).aligned` with `alignment == "words"`: `sample_aligned`,
`mosi_sdk_aligned`; EF-LSTM, MFN, MAG-BERT, MAG-XLNet trained on them): `serve` takes the model's own inputs,
one audio/vision frame per token position, as the pipeline makes them; a client that has raw text cannot know
those positions, so `serve_text` takes the frames PER WHITESPACE WORD of `text` instead — `audio` float32
[B, W, D_a] with `audio_lengths` int32 [B] = the number of words (rows past it are ignored), the same for
vision — and lays them on the tokens in the graph exactly as training did (`keras_mmsa.data.pipeline.
expand_word_frames`: each word's row repeated over its WordPiece pieces, zeros on special tokens and padding). A
row count that differs from the text's word count fails with INVALID_ARGUMENT. Runs on token-aligned data
(MMSA's aligned pickles, `alignment == "tokens"`) keep per-token frames in both signatures.

Both signatures check their inputs inside the graph: each `*_lengths` must lie in [1, padded length] and the
audio/vision features must be finite; a bad request fails with `InvalidArgumentError` (TF Serving: status
INVALID_ARGUMENT) naming the input, never a silent NaN.

`saved_model_cli show --dir <run>/export --all` prints both signatures.
"""

from __future__ import annotations

import pathlib
import shutil

import keras
import tensorflow as tf

from keras_mmsa.data.pipeline import expand_word_frames, padded_lengths, tokenize_batch
from keras_mmsa.data.spec import AUDIO_KEYS, TEXT_KEYS, VISION_KEYS


def input_signature(model, lengths, dims):
    """`{key: tf.TensorSpec}` of the inputs dict the model uses, with static sequence lengths."""
    spec = {
        "token_ids": tf.TensorSpec([None, lengths["text"]], tf.int32, name="token_ids"),
        "padding_mask": tf.TensorSpec([None, lengths["text"]], tf.bool, name="padding_mask"),
        "segment_ids": tf.TensorSpec([None, lengths["text"]], tf.int32, name="segment_ids"),
    }
    for m, keys in (("audio", AUDIO_KEYS), ("vision", VISION_KEYS)):
        if m in model.modalities:
            spec[keys[0]] = tf.TensorSpec([None, lengths[m], dims[m]], tf.float32, name=keys[0])
            spec[keys[1]] = tf.TensorSpec([None], tf.int32, name=keys[1])
    return spec


def checked_inputs(inputs, lengths):
    """`inputs` with in-graph checks: lengths in [1, padded length], finite features (else InvalidArgument)."""
    inputs = dict(inputs)
    for m, (feature, length) in (("audio", AUDIO_KEYS), ("vision", VISION_KEYS)):
        if feature not in inputs:
            continue
        padded = int(lengths[m])
        checks = [
            tf.debugging.assert_greater_equal(
                inputs[length], 1, message=f"input '{length}' must lie in [1, {padded}]"
            ),
            tf.debugging.assert_less_equal(
                inputs[length], padded, message=f"input '{length}' must lie in [1, {padded}]"
            ),
        ]
        with tf.control_dependencies(checks):
            inputs[length] = tf.identity(inputs[length])
        inputs[feature] = tf.debugging.assert_all_finite(
            inputs[feature], f"input '{feature}' holds NaN or Inf values"
        )
    return inputs


def _word_aligned(info):
    return bool(getattr(info, "aligned", False)) and getattr(info, "alignment", None) == "words"


def _checked_word_counts(counts, frames, name):
    """`counts` (int [B]) checked to lie in [0, W] of `frames` [B, W, D]: the rows of each text's words."""
    counts = tf.convert_to_tensor(counts, tf.int32)
    width = tf.shape(frames, out_type=tf.int32)[1]
    checks = [
        tf.debugging.assert_greater_equal(
            counts, 0, message=f"input '{name}' (words per text) must be >= 0"
        ),
        tf.debugging.assert_less_equal(
            counts,
            width,
            message=f"input '{name}' (words per text) exceeds the rows of its frames",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(counts)


def export_saved_model(
    model,
    export_dir,
    *,
    tokenizer=None,
    info=None,
    config=None,
    lengths=None,
    text_signature=True,
):
    """Writes a SavedModel with the `serve` (and, given a tokenizer, `serve_text`) signatures.

    Args:
        model: a built keras_mmsa model whose `call(inputs)` returns the sentiment [B].
        export_dir: output folder (replaced if it exists).
        tokenizer: the KerasHub tokenizer of the text backbone (adds `serve_text`).
        info: the dataset's `DatasetInfo` (padded lengths, feature dims).
        config: the run's `RunConfig` (its `max_lengths` override the dataset's lengths).
        lengths: explicit `{"text", "audio", "vision"}` lengths (instead of info/config).
        text_signature: add `serve_text` when a tokenizer is given (False: a SavedModel that loads without
            `tensorflow_text`).

    Returns:
        The export path.
    """
    export_dir = pathlib.Path(export_dir)
    if lengths is None:  # aligned data: audio/vision follow the text length
        lengths = padded_lengths(info, config.max_lengths if config is not None else None)
    dims = {"audio": model.audio_dim, "vision": model.vision_dim}
    spec = input_signature(model, lengths, dims)

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(inputs):
        return {"sentiment": model(checked_inputs(inputs, lengths), training=False)}

    archive.add_endpoint("serve", serve, input_signature=[spec])
    if tokenizer is not None and text_signature:
        if not tokenizer.built:
            tokenizer(tf.constant(["built"]))  # a tokenizer is "built" once called; export needs it
        archive.track(tokenizer)
        text_spec = {k: v for k, v in spec.items() if k not in TEXT_KEYS}
        text_spec["text"] = tf.TensorSpec([None], tf.string, name="text")
        text_len = int(lengths["text"])
        per_word = [
            keys
            for m, keys in (("audio", AUDIO_KEYS), ("vision", VISION_KEYS))
            if keys[0] in spec and info is not None and _word_aligned(info)
        ]
        for feature, _ in per_word:  # frames per whitespace word, any number of words
            text_spec[feature] = tf.TensorSpec(
                [None, None, spec[feature].shape[-1]], tf.float32, name=feature
            )

        def serve_text(inputs):
            inputs = dict(inputs)
            texts = inputs.pop("text")
            tokens = tokenize_batch(tokenizer, texts, text_len)
            inputs.update(tokens)
            if per_word:
                words = {}
                for feature, length in per_word:
                    n_words = _checked_word_counts(inputs[length], inputs[feature], length)
                    inputs[feature] = tf.debugging.assert_all_finite(
                        inputs[feature], f"input '{feature}' holds NaN or Inf values"
                    )
                    words[feature] = tf.RaggedTensor.from_tensor(inputs[feature], lengths=n_words)
                placed = expand_word_frames(
                    tokenizer,
                    texts,
                    words,
                    tokens["token_ids"],
                    tokens["padding_mask"],
                    dataset_name="serve_text request",
                )
                for feature, length in per_word:
                    inputs[feature] = placed[feature]
                    inputs[length] = tf.cast(placed["lengths"], tf.int32)
            return {"sentiment": model(checked_inputs(inputs, lengths), training=False)}

        archive.add_endpoint("serve_text", serve_text, input_signature=[text_spec])
    if export_dir.exists():
        shutil.rmtree(export_dir)
    archive.write_out(str(export_dir), verbose=False)
    return export_dir
