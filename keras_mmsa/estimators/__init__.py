"""Mutual-information estimators: variational bounds as pure `keras.ops` functions, and the small networks
that produce their scores (Gaussian conditional q(y|x), CLUB, CPC predictor, statistic network T_θ,
separable critic, polarity-GMM entropy with a history memory, MINE's moving average as layer state)."""

from keras_mmsa.estimators.bounds import (
    barber_agakov_lower_bound,
    club_sample_upper_bound,
    club_upper_bound,
    donsker_varadhan_lower_bound,
    gradient_penalty,
    infonce_lower_bound,
    js_fgan_lower_bound,
    js_lower_bound,
    log_mean_exp,
    masked_mean,
    nwj_lower_bound,
    split_score_matrix,
    update_log_moving_average,
    wasserstein_dependency,
)
from keras_mmsa.estimators.club import CLUB
from keras_mmsa.estimators.cpc_predictor import CPCPredictor, l2_normalize
from keras_mmsa.estimators.gaussian import (
    cholesky_log_det,
    correlated_gaussian_mi,
    gaussian_entropy,
    gaussian_log_likelihood,
    gaussian_log_likelihood_matrix,
    mi_to_rho,
)
from keras_mmsa.estimators.gaussian_conditional import GaussianConditional
from keras_mmsa.estimators.input_gradients import input_gradients
from keras_mmsa.estimators.mine_moving_average import MINEMovingAverage
from keras_mmsa.estimators.multivariate import (
    default_groups,
    derangement,
    random_permutation,
    sample_product_of_marginals,
    total_correlation_lower_bound,
)
from keras_mmsa.estimators.polarity_gmm_entropy import PolarityGMMEntropy
from keras_mmsa.estimators.separable_critic import SeparableCritic
from keras_mmsa.estimators.statistic_network import (
    StatisticNetwork,
    interpolate_samples,
    pairwise_concat,
)

__all__ = [
    "CLUB",
    "CPCPredictor",
    "GaussianConditional",
    "MINEMovingAverage",
    "PolarityGMMEntropy",
    "SeparableCritic",
    "StatisticNetwork",
    "barber_agakov_lower_bound",
    "cholesky_log_det",
    "club_sample_upper_bound",
    "club_upper_bound",
    "correlated_gaussian_mi",
    "default_groups",
    "derangement",
    "donsker_varadhan_lower_bound",
    "gaussian_entropy",
    "gaussian_log_likelihood",
    "gaussian_log_likelihood_matrix",
    "gradient_penalty",
    "infonce_lower_bound",
    "input_gradients",
    "interpolate_samples",
    "js_fgan_lower_bound",
    "js_lower_bound",
    "l2_normalize",
    "log_mean_exp",
    "masked_mean",
    "mi_to_rho",
    "nwj_lower_bound",
    "pairwise_concat",
    "random_permutation",
    "sample_product_of_marginals",
    "split_score_matrix",
    "total_correlation_lower_bound",
    "update_log_moving_average",
    "wasserstein_dependency",
]
