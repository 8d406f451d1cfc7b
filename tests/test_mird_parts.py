"""MIRD's parts: the warm-up schedule's values and the log-losses (eq. 18-19) against numpy."""

import keras
import numpy as np
import pytest

from keras_mmsa.models.mird import (
    LOG_EPSILON,
    LinearWarmup,
    log_mse,
    masked_log_cross_entropy,
    masked_log_mse,
)


def test_warmup_warms_up_then_decays():
    lr = LinearWarmup(2e-5, warmup_steps=10, total_steps=110)
    values = np.array([float(lr(s)) for s in [0, 5, 10, 60, 110, 200]])
    np.testing.assert_allclose(values, [0.0, 1e-5, 2e-5, 1e-5, 0.0, 0.0], atol=1e-12)
    assert float(lr(30)) < float(lr(10))  # it decays (the official code's swap only warms up)
    restored = LinearWarmup.from_config(lr.get_config())
    assert float(restored(60)) == pytest.approx(1e-5)
    opt = keras.optimizers.deserialize(
        keras.optimizers.serialize(keras.optimizers.AdamW(learning_rate=lr))
    )
    assert isinstance(opt._learning_rate, LinearWarmup) and opt._learning_rate.total_steps == 110
    with pytest.raises(ValueError, match="warmup_steps"):
        LinearWarmup(1.0, warmup_steps=20, total_steps=10)


def test_log_losses_match_numpy_and_ignore_zero_weight():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=8), rng.normal(size=8)
    w = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    expected = np.log(np.mean((p[:4] - y[:4]) ** 2) + LOG_EPSILON)
    assert float(log_mse(y_true=y, y_pred=p, sample_weight=w)) == pytest.approx(expected, rel=1e-5)
    p2 = p.copy()
    p2[4:] += 100.0  # unlabeled predictions do not move the task loss
    assert float(log_mse(y_true=y, y_pred=p2, sample_weight=w)) == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(float(log_mse(y_true=y, y_pred=y, sample_weight=np.zeros(8))))

    x, xh = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    ref = np.log(((xh - x) ** 2)[mask].mean() + LOG_EPSILON)
    assert float(masked_log_mse(x_true=x, x_pred=xh, mask=mask)) == pytest.approx(ref, rel=1e-5)
    assert float(masked_log_mse(x_true=x, x_pred=x, mask=mask)) == pytest.approx(
        np.log(LOG_EPSILON)
    )

    ids = rng.integers(0, 6, size=(2, 5))
    logits = rng.normal(size=(2, 5, 6))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, ids[..., None], -1)[..., 0]
    ref = np.log(ce[mask].mean() + LOG_EPSILON)
    got = float(masked_log_cross_entropy(token_ids=ids, logits=logits, mask=mask))
    assert got == pytest.approx(ref, rel=1e-5)
