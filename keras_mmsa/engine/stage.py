"""`Stage`: one optimisation stage of a method (a loss, the variable groups it updates, how often per batch)."""

from __future__ import annotations

import dataclasses

# Key of the inputs dict that carries a batch's stage id (int32 [B], constant within the batch): the batch then
# runs that stage only (per-epoch alternation, see `keras_mmsa.data.staging`).
STAGE_KEY = "stage"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One optimisation stage of a `MultiStageModel`.

    Args:
        name: stage name (e.g. `"lld"`, `"main"`).
        groups: the variable groups this stage updates, each with its own optimizer.
        logs: names of the scalars this stage reports (one `keras.metrics.Mean` tracker each). The last stage's
            objective is always reported as `"loss"`.
        repeats: how many updates per batch (MDM's `Unroll` = 10, MIRD's T' = 5).
        clipnorm: global-norm gradient clipping over all of the stage's gradients (None: no clipping).
    """

    name: str
    groups: tuple[str, ...]
    logs: tuple[str, ...] = ()
    repeats: int = 1
    clipnorm: float | None = None

    def __post_init__(self):
        if not self.groups:
            raise ValueError(f"stage {self.name!r} updates no variable group")
        if int(self.repeats) < 1:
            raise ValueError(f"stage {self.name!r}: repeats must be >= 1; got {self.repeats}")
