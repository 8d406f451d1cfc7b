"""The method registry: adding a method to the toolkit's workflow adds one entry to `METHODS`."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Method:
    """How the workflow builds and optimises one method.

    Attributes:
        name: the `--method` name.
        preset: dataset name -> {"model": {...}, "train": {...}, "text_backbone": spec}.
        build: (resolved RunConfig, DatasetInfo, text backbone) -> a built `MultiStageModel`.
        optimizers: train settings dict -> `{group: optimizer}` for `compile(optimizers=...)`.
        stage_fractions: (resolved RunConfig, DatasetInfo) -> per-stage pass fractions for `epoch_stream` (None: every batch
            runs every stage).
        extra_model_keys: model settings accepted beyond the preset's keys (the rest of `__init__`).
        adapt: (built model, unbatched training examples) -> None: fits the model's data-dependent,
            non-trainable state (e.g. MMIM's `standardize` input statistics) on the training split before the
            first epoch; None: nothing to fit.
    """

    name: str
    preset: Callable
    build: Callable
    optimizers: Callable
    stage_fractions: Callable
    extra_model_keys: tuple = ()
    adapt: Callable | None = None


def _mmim():
    from keras_mmsa.configs import mmim as presets
    from keras_mmsa.models.mmim import MMIM

    def build(config, info, backbone):
        dims = {"audio": info.audio_dim, "vision": info.vision_dim}
        model = MMIM(
            backbone,
            audio_dim=dims.get("audio"),
            vision_dim=dims.get("vision"),
            modalities=config.modalities or list(info.modalities),
            batch_size=config.train["batch_size"],
            clipnorm=config.train["clipnorm"],
            alternation=config.train["alternation"],
            **config.model,
        )
        lengths = dict(info.lengths)
        lengths.update(config.max_lengths or {})
        model.build(
            {
                "token_ids": (None, lengths.get("text")),
                "audio": (None, lengths.get("audio"), dims.get("audio")),
                "vision": (None, lengths.get("vision"), dims.get("vision")),
            }
        )
        return model

    def optimizers(train):
        return MMIM.optimizers_from_settings(train)

    def stage_fractions(config, info):
        modalities = config.modalities or list(info.modalities)
        if config.train["alternation"] != "epoch" or set(modalities) <= {"text"}:
            return None  # per-batch alternation, or text only (no likelihood stage)
        return (config.train["stage1_fraction"], 1.0)

    def adapt(model, examples):
        model.adapt(examples.batch(512))

    init_args = set(inspect.signature(MMIM.__init__).parameters) - {
        "self",
        "text_backbone",
        "kwargs",
    }
    fixed = {"audio_dim", "vision_dim", "modalities", "batch_size", "clipnorm", "alternation"}
    return Method(
        name="mmim",
        preset=presets.get_preset,
        build=build,
        optimizers=optimizers,
        stage_fractions=stage_fractions,
        extra_model_keys=tuple(sorted(init_args - fixed)),
        adapt=adapt,
    )


_FACTORIES = {"mmim": _mmim}
METHODS = tuple(_FACTORIES)


def get_method(name):
    """The registered `Method` called `name`; a ValueError naming the known methods otherwise."""
    key = str(name).lower()
    if key not in _FACTORIES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return _FACTORIES[key]()
