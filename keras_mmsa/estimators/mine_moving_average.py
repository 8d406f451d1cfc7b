import keras
from keras import ops

from keras_mmsa.estimators import bounds


@keras.saving.register_keras_serializable(package="keras_mmsa")
class MINEMovingAverage(keras.layers.Layer):
    """MINE's Donsker–Varadhan bound with a bias-corrected gradient, its moving average kept as layer state.

    The DV bound I ≥ E_p[T] − log E_q[e^T] has a biased mini-batch gradient: ∇ log Ê_q[e^T] divides by the
    batch estimate Ê_q[e^T]. MINE (Belghazi et al., 2018, §3.2) divides by an exponential moving average of
    E_q[e^T] instead. Here the EMA is model state — a non-trainable float32 variable (in log space) that is
    checkpointed with the model and survives `get_weights`/`set_weights` — and it is written only by an
    explicit `update_state`, never inside a loss:

    * `call` / `lower_bound` (the stage loss) READ the state. The value returned is the DV bound of the
      batch; its gradient uses EMA' = decay·EMA + (1 − decay)·Ê_q[e^T], the moving average updated with the
      current batch (as MINE does before its step), computed but not written. Computing the loss any number
      of times leaves the state unchanged.
    * `update_state(marginal_scores=...)` WRITES EMA ← EMA' after the stage (the engine lets a method write
      state after any stage); pass the marginal scores the stage computed. The first update initialises the
      EMA with the batch value (and before any update the gradient is the plain DV one).

    In log space: log EMA' = logaddexp(log EMA + log decay, log Ê_q[e^T] + log(1 − decay))
    (`bounds.update_log_moving_average`).

    Call arguments: `call(joint_scores, marginal_scores, joint_mask=None, marginal_mask=None)` with flat
    scores of T on joint and on product-of-marginal samples (MDM: T(Z) and T(Z of the permuted batch));
    `lower_bound(scores=...)` also takes a [B, B] score matrix (diagonal = joint).

    Args:
        decay: float in [0, 1), the EMA decay (MINE's 1 − α; α = 0.01 in its code → 0.99).
        **kwargs: `keras.layers.Layer` arguments.

    Example:
    >>> mine = MINEMovingAverage(decay=0.99)
    >>> joint, marginal = keras.random.normal((32,)), keras.random.normal((32,))
    >>> loss = -mine(joint, marginal)                 # stage loss: reads the state only
    >>> mine.update_state(marginal_scores=marginal)   # after the stage: EMA ← EMA'

    Reference: MINE (Belghazi et al., 2018) eq. 10–12 and §3.2; MDM (Colombo et al., 2021) eq. 6.
    """

    def __init__(self, *, decay=0.99, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"`decay` must be in [0, 1); got {decay}.")
        self.decay = float(decay)
        self.autocast = False
        self.log_moving_average = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            autocast=False,
            trainable=False,
            aggregation="mean",
            name="log_moving_average",
        )
        self.initialized = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            autocast=False,
            trainable=False,
            aggregation="only_first_replica",
            name="initialized",
        )
        self.built = True

    def next_log_moving_average(self, marginal_scores, marginal_mask=None):
        """log EMA': the state updated with this batch (no gradient, nothing written)."""
        batch = ops.stop_gradient(bounds.log_mean_exp(marginal_scores, mask=marginal_mask))
        updated = bounds.update_log_moving_average(
            log_moving_average=self.log_moving_average,
            marginal_scores=marginal_scores,
            decay=self.decay,
            mask=marginal_mask,
        )
        return ops.where(self.initialized > 0.0, updated, batch)

    def lower_bound(
        self,
        *,
        scores=None,
        joint_scores=None,
        marginal_scores=None,
        mask=None,
        joint_mask=None,
        marginal_mask=None,
    ):
        """The DV bound (nats) with MINE's bias-corrected gradient; reads the state, never writes it."""
        joint, jmask, marg, mmask = bounds._joint_and_marginal(
            scores, joint_scores, marginal_scores, mask, joint_mask, marginal_mask
        )
        return bounds.donsker_varadhan_lower_bound(
            joint_scores=joint,
            marginal_scores=marg,
            joint_mask=jmask,
            marginal_mask=mmask,
            log_moving_average=self.next_log_moving_average(marg, mmask),
        )

    def call(self, joint_scores, marginal_scores, joint_mask=None, marginal_mask=None):
        return self.lower_bound(
            joint_scores=joint_scores,
            marginal_scores=marginal_scores,
            joint_mask=joint_mask,
            marginal_mask=marginal_mask,
        )

    def update_state(self, *, marginal_scores=None, marginal_mask=None, scores=None, mask=None):
        """EMA ← EMA' from this batch's marginal scores (or a score matrix's off-diagonal); no gradient."""
        if scores is not None:
            if marginal_scores is not None:
                raise ValueError("Pass either `scores` or `marginal_scores`, not both.")
            _, _, marginal_scores, marginal_mask = bounds.split_score_matrix(
                scores=scores, mask=mask
            )
        elif marginal_scores is None:
            raise ValueError("Pass `marginal_scores` (or a score matrix `scores`).")
        new = self.next_log_moving_average(ops.stop_gradient(marginal_scores), marginal_mask)
        self.log_moving_average.assign(ops.cast(new, "float32"))
        self.initialized.assign(ops.ones((), dtype="float32"))

    def reset_state(self):
        """Forget the moving average (the next update re-initialises it with its batch)."""
        self.log_moving_average.assign(ops.zeros((), dtype="float32"))
        self.initialized.assign(ops.zeros((), dtype="float32"))

    def compute_output_shape(self, *args, **kwargs):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update({"decay": self.decay})
        return config
