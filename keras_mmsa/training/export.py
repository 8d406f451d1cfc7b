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

from keras_mmsa.data.pipeline import padded_lengths, tokenize_batch
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

        def serve_text(inputs):
            inputs = dict(inputs)
            inputs.update(tokenize_batch(tokenizer, inputs.pop("text"), text_len))
            return {"sentiment": model(checked_inputs(inputs, lengths), training=False)}

        archive.add_endpoint("serve_text", serve_text, input_signature=[text_spec])
    if export_dir.exists():
        shutil.rmtree(export_dir)
    archive.write_out(str(export_dir), verbose=False)
    return export_dir
