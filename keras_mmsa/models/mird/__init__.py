"""MIRD (Qian et al.): the method (`MIRD`), its warm-up schedule and its log-losses (eq. 18-19)."""

from keras_mmsa.models.mird.losses import (
    LOG_EPSILON,
    log_mse,
    masked_log_cross_entropy,
    masked_log_mse,
)
from keras_mmsa.models.mird.mird import MIRD, club_pairs
from keras_mmsa.models.mird.schedule import LinearWarmup

__all__ = [
    "LOG_EPSILON",
    "MIRD",
    "LinearWarmup",
    "club_pairs",
    "log_mse",
    "masked_log_cross_entropy",
    "masked_log_mse",
]
