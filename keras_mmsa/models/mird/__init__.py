"""MIRD (Qian et al.): building blocks so far — the warm-up schedule and the log-losses (eq. 18-19)."""

from keras_mmsa.models.mird.losses import (
    LOG_EPSILON,
    log_mse,
    masked_log_cross_entropy,
    masked_log_mse,
)
from keras_mmsa.models.mird.schedule import LinearWarmup

__all__ = ["LOG_EPSILON", "LinearWarmup", "log_mse", "masked_log_cross_entropy", "masked_log_mse"]
