"""Epoch-indexed training streams: reproducible per-epoch order and MMIM's per-epoch stage alternation.

`epoch_stream(examples, ...)` turns an unbatched dataset of `(inputs, label)` into the whole training stream of
epochs `first_epoch .. num_epochs-1`. Epoch e's order is a pure function of `(seed, e)`, so a run resumed from a
backup at epoch e sees exactly the batches an uninterrupted run would have seen (a plain
`shuffle(reshuffle_each_iteration=True)` restarts its sequence of orders when the process restarts).

With `stage_fractions`, each epoch is a sequence of passes, one per stage: stage k runs on the first
`ceil(fraction_k * n_batches)` batches of its own shuffled order, and its batches carry `inputs["stage"] = k`
(int32 [B]), which the engine's train step reads. MMIM's Algorithm 1 is `stage_fractions=(f, 1.0)`: a pass
of likelihood batches over D_sub (f = 1 on MOSI, 0.5 on MOSEI), then a pass of main batches over D.
"""

import math

import tensorflow as tf

from keras_mmsa.engine.stage import STAGE_KEY


def pass_steps(fractions, num_batches):
    """Batches per pass of a per-epoch schedule: `ceil(f * num_batches)` per stage fraction, at least 1."""
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"stage fractions must be in (0, 1]; got {tuple(fractions)}")
    return [max(1, math.ceil(f * num_batches)) for f in fractions]


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
        examples: unbatched, finite dataset of `(inputs, label)` or `(inputs, label, weight)` (e.g. `load(..., shuffle=False).unbatch()`,
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
    steps = [batches] if stage_fractions is None else pass_steps(stage_fractions, batches)

    def one_pass(epoch, k, take):
        ds = examples.shuffle(buffer, seed=_seed(seed, epoch, k), reshuffle_each_iteration=False)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).take(take)
        if stage_fractions is None:
            return ds

        def tag(inputs, label, *weight):
            inputs = dict(inputs)
            inputs[STAGE_KEY] = tf.fill(tf.shape(label), tf.constant(k, tf.int32))
            return (inputs, label, *weight)

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


def _carries_stage_ids(dataset):
    spec = dataset.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    return isinstance(first, dict) and STAGE_KEY in first


def scheduled_dataset(x, fractions, *, owner="model", steps_per_epoch=None, has_y=False):
    """`fit`'s input turned into a per-epoch schedule's passes (see `MultiStageModel.fit`).

    Args:
        x: what the user passed to `fit` as `x`.
        fractions: one pass fraction in (0, 1] per stage.
        owner: the model's class name, for messages.
        steps_per_epoch: `fit`'s argument (a plain dataset with it is refused).
        has_y: whether `fit` got a separate `y` (refused: the passes need `(inputs, label)` batches).

    Returns:
        `x` itself when it already carries stage ids; else a dataset of `(inputs + stage id, label[, weight])`
        batches: per stage k, `ceil(f_k * n_batches)` batches of one iteration of `x`, stage 0 first.
    """
    hint = (
        f"{owner} trains with a per-epoch stage schedule {tuple(fractions)} (one pass per stage); "
        "fit() builds it from a finite tf.data.Dataset of (inputs, label) batches"
    )
    if not isinstance(x, tf.data.Dataset):
        raise ValueError(
            f"{hint}; got {type(x).__name__}. Pass a tf.data.Dataset (keras_mmsa.data.load), a stream with "
            "stage ids (keras_mmsa.data.epoch_stream), or use a per-batch schedule "
            "(e.g. MMIM(alternation='batch'))."
        )
    if _carries_stage_ids(x):
        return x
    if has_y:
        raise ValueError(f"{hint}; pass the labels inside the dataset, not as fit(y=...).")
    if steps_per_epoch is not None:
        raise ValueError(
            f"{hint}; steps_per_epoch would cut the passes. Leave it out, or pass a stream with stage ids "
            "(keras_mmsa.data.epoch_stream returns one with its steps_per_epoch)."
        )
    n = int(x.cardinality())
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError(f"{hint}; the dataset is infinite (a .repeat()?).")
    if n < 0:
        n = count_examples(x)
    if n == 0:
        raise ValueError(f"{hint}; the dataset is empty.")
    steps = pass_steps(fractions, n)

    def tagger(k):
        def tag(inputs, *rest):
            if not isinstance(inputs, dict):
                raise ValueError(
                    f"{hint}; the batches' inputs must be a dict (the spec inputs dict)"
                )
            inputs = dict(inputs)
            inputs[STAGE_KEY] = tf.fill(tf.shape(rest[0])[:1], tf.constant(k, tf.int32))
            return (inputs, *rest)

        return tag

    out = None
    for k, take in enumerate(steps):
        one = x.take(take).map(tagger(k))
        out = one if out is None else out.concatenate(one)
    return out


def input_shapes(x):
    """`{key: shape}` of the inputs dict of a `tf.data.Dataset`'s elements (None for anything else)."""
    if not isinstance(x, tf.data.Dataset):
        return None
    spec = x.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    if not isinstance(first, dict):
        return None
    return {k: tuple(v.shape) for k, v in first.items()}
