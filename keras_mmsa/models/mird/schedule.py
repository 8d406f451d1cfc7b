"""`LinearWarmup`: the learning-rate schedule MIRD's optimizers follow."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmsa")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then linear decay to 0 at `total_steps`:

        lr(s) = learning_rate * s / warmup_steps                              for s < warmup_steps
        lr(s) = learning_rate * max(0, (total_steps - s) / (total_steps - warmup_steps))   otherwise

    (the form of transformers' `get_linear_schedule_with_warmup`). The official MIRD code passes the two step
    counts to that function in swapped order, so its learning rate only ever warms up over the whole run; here
    the arguments are named and checked (`warmup_steps <= total_steps`), so it warms up and then decays.

    Args:
        learning_rate: the peak learning rate.
        warmup_steps: steps of the warm-up (0: start at the peak).
        total_steps: the step at which the rate reaches 0.
        name: optional name.

    Example:
    >>> lr = LinearWarmup(1.0, warmup_steps=2, total_steps=6)
    >>> [round(float(lr(s)), 2) for s in range(7)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]

    Reference:
        Qian et al. "MIRD" (training details: AdamW with linear warm-up); Devlin et al. 2019 (BERT's schedule).
    """

    def __init__(self, learning_rate, warmup_steps, total_steps, name=None):
        if not 0 <= warmup_steps <= total_steps or total_steps <= 0:
            raise ValueError(
                "LinearWarmup needs 0 <= warmup_steps <= total_steps and total_steps > 0; got "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.name = name

    def __call__(self, step):
        s = ops.cast(step, "float32")
        warm = ops.cast(max(self.warmup_steps, 1), "float32")
        up = s / warm
        span = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        down = ops.maximum(0.0, (ops.cast(self.total_steps, "float32") - s) / span)
        factor = ops.where(s < self.warmup_steps, up, down)
        return self.learning_rate * factor

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "name": self.name,
        }
