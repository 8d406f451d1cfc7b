"""epoch_stream: per-epoch order is a function of (seed, epoch); stage passes are tagged and sized."""

import numpy as np
import tensorflow as tf

from keras_mmsa.data.staging import epoch_stream


def _examples(n=10):
    x = {"v": np.arange(n, dtype="float32")}
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n, dtype="float32")))


def _epochs(stream, steps, num):
    out = [[] for _ in range(num)]
    for i, (x, _) in enumerate(stream):
        out[i // steps].append(
            (np.asarray(x["v"]).tolist(), np.asarray(x.get("stage", [-1])).tolist())
        )
    return out


def test_each_epoch_is_a_permutation_and_resuming_gives_the_same_batches():
    full, steps = epoch_stream(_examples(), batch_size=4, seed=3, num_epochs=4)
    assert steps == 3
    epochs = _epochs(full, steps, 4)
    for e in epochs:
        assert sorted(v for batch, _ in e for v in batch) == list(range(10))
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    resumed, _ = epoch_stream(_examples(), batch_size=4, seed=3, num_epochs=4, first_epoch=2)
    assert _epochs(resumed, steps, 2) == epochs[2:]
    other, _ = epoch_stream(_examples(), batch_size=4, seed=4, num_epochs=1)
    assert _epochs(other, steps, 1)[0] != epochs[0]


def test_stage_passes_are_tagged_and_stage_one_covers_the_fraction():
    stream, steps = epoch_stream(
        _examples(), batch_size=2, seed=0, num_epochs=2, stage_fractions=(0.4, 1.0)
    )
    assert steps == 2 + 5  # ceil(0.4 * 5) stage-0 batches, then all 5 stage-1 batches
    for epoch in _epochs(stream, steps, 2):
        stages = [s[0] for _, s in epoch]
        assert stages == [0, 0, 1, 1, 1, 1, 1]
        assert all(len(set(s)) == 1 for _, s in epoch)
        assert sorted(v for batch, s in epoch if s[0] == 1 for v in batch) == list(range(10))


def test_bad_fractions_and_empty_data():
    import pytest

    with pytest.raises(ValueError, match="fractions"):
        epoch_stream(_examples(), batch_size=2, seed=0, num_epochs=1, stage_fractions=(0.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        epoch_stream(_examples(0), batch_size=2, seed=0, num_epochs=1, num_examples=0)
