"""MDM hyper-parameters: the preset of the base model it wraps, plus the dependency penalty's settings.

An MDM preset is `get_preset(dataset, base)`: the base model's own preset for the dataset (`keras_mmsa.configs.
<base>`, e.g. MMSA's TFN settings), its `model` extended with MDM's constructor arguments (`MODEL`) and its
`train` with the critic's optimizer settings (`TRAIN`). The base model keeps its own optimizers, learning rates,
clipping and early stopping, so "base alone" (`penalty="none"`) and "base + penalty" differ only by the penalty:
the paired comparison the paper's Tables 1-2 make.

Paper values (Colombo et al. 2021): `unroll` = 10 critic updates per model update (App. A.1.2); the statistic
network of App. Table 4 (widths d/2, d, d, d/4, d/4 of the fusion size d, LeakyReLU, dropout 0.4, sigmoid output).
Not in the paper, chosen here (see `keras_mmsa.models.MDM`'s docstring): lambda = 0.1 (the paper never states
its value), a floor of 16 units on the critic's widths (Table 4 gives 1-unit layers for LMF's 3-wide Z), the critic's optimizer (Adam, `lr_critic` = 1e-3, the middle of the paper's learning-rate grid),
the penalty (Wasserstein, the paper's recommendation, §5.2 "Takeaways") and its Lipschitz constraint (spectral
normalisation).

The same settings apply to every dataset family: the paper tunes only the learning rate, per model and dataset,
in {0.002, 0.001, 0.0005, 0.0001}.
"""

from keras_mmsa.configs.families import FAMILY_OF

__all__ = ["DEFAULT_BASE", "FAMILY_OF", "MODEL", "TRAIN", "get_preset"]

# The base model of `--method mdm` when `model.base` is not set: TFN is one of the paper's models and trains
# in a few seconds per epoch on the bundled sample.
DEFAULT_BASE = "tfn"

MODEL = dict(
    base=DEFAULT_BASE,
    penalty="wasserstein",
    lam=0.1,
    unroll=10,
    negatives="inputs",
    critic_min_width=16,  # Table 4's widths floored at 16 units (LMF's Z is 3 wide; see MDM's docstring)
    critic_output="sigmoid",
    lipschitz="spectral",
    gradient_penalty_weight=10.0,
    wasserstein_log=False,
)

TRAIN = dict(lr_critic=1e-3)


def get_preset(name, base=DEFAULT_BASE):
    """The MDM preset over `base` (a registered base-model name) for a dataset family or builder config name.

    Raises a ValueError naming the known base models when `base` is not one.
    """
    from keras_mmsa.models.mdm.mdm import base_model_class

    base_cls = base_model_class(base)
    preset = base_cls.preset(name)
    clash = sorted((set(MODEL) - {"base"}) & set(preset["model"]))
    if clash:
        raise ValueError(f"the base model {base!r} has settings named like MDM's: {clash}")
    preset["model"] = {**preset["model"], **MODEL, "base": base}
    preset["train"] = {**preset["train"], **TRAIN}
    return preset
