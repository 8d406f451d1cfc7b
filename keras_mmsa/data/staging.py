"""Epoch-indexed training streams: reproducible per-epoch order and MMIM's per-epoch stage alternation.

`epoch_stream(examples, ...)` turns an unbatched dataset of `(inputs, label)` into the whole training stream of
epochs `first_epoch .. num_epochs-1`. Epoch e's order is a pure function of `(seed, e)`, so a run resumed from a
backup at epoch e sees exactly the batches an uninterrupted run would have seen (a plain
`shuffle(reshuffle_each_iteration=True)` restarts its sequence of orders when the process restarts).

With `stage_fractions`, each epoch is a sequence of passes, one per stage: stage k runs on the first
`ceil(fraction_k * n_batches)` batches of its own shuffled order, and its batches carry `inputs["stage"] = k`
(int32 [B]), which `MultiStageModel.train_step` reads. MMIM's Algorithm 1 is `stage_fractions=(f, 1.0)`: a pass
of likelihood batches over D_sub (f = 1 on MOSI, 0.5 on MOSEI), then a pass of main batches over D.
"""

import math

import tensorflow as tf

from keras_mmsa.models.multi_stage_model import STAGE_KEY


def _seed(seed, epoch, stage):
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + int(stage)) % (2**31 - 1)


def count_examples(examples):
    """Number of elements of a finite dataset (iterates it once)."""
    n = int(examples.cardinality())
    if n >= 0:
        return n
    return int(examples.reduce(tf.constant(0, tf.int64), lambda c, _: c + 1))


def epoch_stream(
    examples,
    *,
    batch_size,
    seed,
    num_epochs,
    first_epoch=0,
    num_examples=None,
    stage_fractions=None,
    shuffle_buffer=None,
    drop_remainder=False,
):
    """The training stream of epochs `first_epoch .. num_epochs - 1`.

    Args:
        examples: unbatched, finite dataset of `(inputs, label)` (e.g. `load(..., shuffle=False).unbatch()`,
            ideally `.cache()`d).
        batch_size: int.
        seed: int; epoch e of stage k is shuffled with a seed derived from `(seed, e, k)`.
        num_epochs: total number of epochs of the run (the stream ends after epoch `num_epochs - 1`).
        first_epoch: the epoch the stream starts at (the resume point).
        num_examples: size of `examples` (counted when None).
        stage_fractions: None (one pass per epoch, no stage key) or one fraction in (0, 1] per stage.
        shuffle_buffer: default: the whole dataset (a uniform permutation).
        drop_remainder: drop each pass's last partial batch.

    Returns:
        `(dataset, steps_per_epoch)`: pass `steps_per_epoch` to `fit` together with `initial_epoch=first_epoch`.
    """
    n = num_examples if num_examples is not None else count_examples(examples)
    if n <= 0:
        raise ValueError("the training split is empty")
    buffer = shuffle_buffer or n
    batches = n // batch_size if drop_remainder else math.ceil(n / batch_size)
    fractions = list(stage_fractions) if stage_fractions is not None else [None]
    for f in fractions:
        if f is not None and not 0.0 < f <= 1.0:
            raise ValueError(f"stage fractions must be in (0, 1]; got {stage_fractions}")
    steps = [batches if f is None else max(1, math.ceil(f * batches)) for f in fractions]

    def one_pass(epoch, k, take):
        ds = examples.shuffle(buffer, seed=_seed(seed, epoch, k), reshuffle_each_iteration=False)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).take(take)
        if stage_fractions is None:
            return ds

        def tag(inputs, label):
            inputs = dict(inputs)
            inputs[STAGE_KEY] = tf.fill(tf.shape(label), tf.constant(k, tf.int32))
            return inputs, label

        return ds.map(tag)

    passes, lengths = [], []
    for epoch in range(first_epoch, num_epochs):
        for k, take in enumerate(steps):
            passes.append(one_pass(epoch, k, take))
            lengths.append(take)
    if not passes:
        raise ValueError(f"no epoch to run: first_epoch={first_epoch} >= num_epochs={num_epochs}")
    # A flat choice over the passes (python-int seeds per pass; a nested concatenate would deepen with epochs).
    order = tf.data.Dataset.from_tensor_slices(tf.constant(lengths, tf.int64)).enumerate()
    order = order.flat_map(lambda i, n: tf.data.Dataset.from_tensors(i).repeat(n))
    stream = tf.data.Dataset.choose_from_datasets(passes, order).prefetch(tf.data.AUTOTUNE)
    return stream, sum(steps)
