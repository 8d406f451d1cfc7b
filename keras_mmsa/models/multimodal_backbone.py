"""`MultimodalBackbone`: the contract of a multimodal base model (encode / fuse / head)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mmsa.data.spec import AUDIO_KEYS, MODALITIES, TEXT_KEYS, VISION_KEYS


class MultimodalBackbone(keras.layers.Layer):
    """Base class of the multimodal base models that methods wrap (KerasHub's task-over-backbone shape).

    A base model maps the keras_mmsa inputs dict (`keras_mmsa/data/spec.py`) to a sentiment score in three
    steps that methods reach into: `encode(x) -> {modality: h_m}` (unimodal representations),
    `fuse(h) -> z` (the fusion representation) and `head(z) -> y` (`[B]`). `call(x)` is their composition and
    `forward(x)` returns all three (`{"h", "z", "prediction"}`), the shared forward pass of a method's stages.
    A base model is serializable on its own, declares its optimizer groups (`variable_groups()`, e.g. BERT apart
    from the rest for its own learning rate) and is trainable alone through `keras_mmsa.models.Supervised`
    (task loss only): every MI method is compared with its base model alone.

    Subclasses implement `encode`, `fuse`, `head`, `get_config`, and set `modalities`, `feature_dims`
    (`{modality: size of h_m}`), `fusion_dim` (size of z) and the input feature sizes `audio_dim`/`vision_dim`
    (None when unused). For the workflow (`scripts/train.py --method <name>`) they also implement the class
    methods `preset`, `from_run_config` (a built `Supervised` over the base model) and
    `optimizers_from_settings`, the same protocol as `keras_mmsa.engine.MultiStageModel`.

    A base model that reads word-aligned inputs (audio/vision with one frame per text token, the aligned-input
    contract of `keras_mmsa/data/spec.py`: EF-LSTM, MFN, MAG-BERT, MAG-XLNet) sets the class attribute
    `requires_aligned = True`; the workflow then defaults to the dataset "sample_aligned" and refuses
    unaligned datasets (`keras_mmsa.training.config.method_requires_aligned`).
    """

    audio_dim = None
    vision_dim = None
    requires_aligned = False

    # ------------------------------------------------------------------ the contract
    def _set_modalities(self, modalities, audio_dim, vision_dim):
        """Checks the used modalities (text always; `check_modalities`) and sets `modalities`, `audio_dim`
        and `vision_dim`: what every base model's constructor starts with. Returns the checked modalities."""
        self.modalities = check_modalities(
            modalities,
            {"audio": audio_dim, "vision": vision_dim},
            owner=type(self).__name__,
            needs=("text",),
        )
        self.audio_dim = audio_dim
        self.vision_dim = vision_dim
        return self.modalities

    def encode(self, x, training=False):
        raise NotImplementedError

    def fuse(self, h, training=False):
        raise NotImplementedError

    def head(self, z, training=False):
        raise NotImplementedError

    def forward(self, x, training=False):
        """`{"h": encode(x), "z": fuse(h), "prediction": head(z)}`."""
        h = self.encode(x, training=training)
        z = self.fuse(h, training=training)
        return {"h": h, "z": z, "prediction": self.head(z, training=training)}

    def call(self, x, training=False):
        return self.forward(x, training=training)["prediction"]

    def variable_groups(self):
        """`{group: [trainable variables]}`, disjoint; default: one group "main"."""
        return {"main": list(self.trainable_variables)}

    def adapt(self, dataset):
        """Fits data-dependent, non-trainable state on the training split; default: nothing."""

    def input_keys(self):
        """The keys of the inputs dict this base model reads."""
        keys = []
        for m, group in (("text", TEXT_KEYS), ("audio", AUDIO_KEYS), ("vision", VISION_KEYS)):
            if m in self.modalities:
                keys += list(group)
        return keys

    def dummy_inputs(self, input_shape=None, batch=2):
        """A zero batch of the inputs dict (padded lengths from `input_shape`, default short ones)."""
        shapes = dict(input_shape or {})
        x = {}
        if "text" in self.modalities:
            length = shapes.get("token_ids", (None, 8))[1] or 8
            for k in TEXT_KEYS:
                x[k] = ops.ones((batch, length), dtype="bool" if k == "padding_mask" else "int32")
        for m, dim in (("audio", self.audio_dim), ("vision", self.vision_dim)):
            if m in self.modalities:
                steps = (shapes.get(m) or (None, 4, dim))[1] or 4
                x[m] = ops.zeros((batch, steps, dim))
                x[f"{m}_lengths"] = ops.ones((batch,), dtype="int32")
        return x

    def build(self, input_shape=None):
        """Creates every variable by running the model once on a zero batch of two examples."""
        if self.built:
            return
        self.forward(self.dummy_inputs(input_shape), training=False)
        self.built = True

    # ------------------------------------------------------------------ workflow protocol
    # The module of the base model's presets (`keras_mmsa.configs.<name>`: `get_preset`, `MODEL_KEYS`).
    presets = None

    @classmethod
    def preset(cls, dataset):
        if cls.presets is None:
            raise NotImplementedError(f"{cls.__name__} has no presets")
        return cls.presets.get_preset(dataset)

    @classmethod
    def model_keys(cls):
        return tuple(cls.presets.MODEL_KEYS)

    @classmethod
    def init_kwargs(cls, config, info, text_backbone):
        """`__init__` arguments from a resolved run config: the dataset's feature sizes and modalities, the
        text backbone, and the base model's keys of `config.model` (a method's own keys are left out)."""
        keys = set(cls.model_keys())
        return dict(
            text_backbone=text_backbone,
            audio_dim=info.audio_dim,
            vision_dim=info.vision_dim,
            modalities=config.modalities or list(info.modalities),
            **{k: v for k, v in config.model.items() if k in keys},
        )

    @classmethod
    def from_run_config(cls, config, info, text_backbone):
        """The base model alone (`Supervised`, task loss only), built for the run's padded shapes."""
        from keras_mmsa.models.supervised import Supervised

        base = cls(**cls.init_kwargs(config, info, text_backbone))
        model = Supervised(base, clipnorm=config.train.get("clipnorm"))
        model.build(build_shapes(info, config, base.audio_dim, base.vision_dim))
        return model

    @classmethod
    def optimizers_from_settings(cls, train):
        raise NotImplementedError(f"{cls.__name__} has no default optimizers")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("text_backbone"), dict):
            config["text_backbone"] = keras.saving.deserialize_keras_object(config["text_backbone"])
        return cls(**config)


def check_modalities(modalities, available, *, owner, needs=()):
    """The used modalities in canonical order (None: `needs` plus every modality of `available` with a
    feature size); errors for unknown ones, missing `needs` and missing dims."""
    if modalities is None:
        modalities = list(needs) + [m for m, d in available.items() if d is not None]
    modalities = list(modalities)
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        raise ValueError(f"{owner}: unknown modalities {unknown}; choose from {MODALITIES}")
    for m in needs:
        if m not in modalities:
            raise ValueError(f"{owner} needs {m!r} among its modalities; got {modalities}")
    for m in modalities:
        if m in available and available[m] is None:
            raise ValueError(f"{owner}: modality {m!r} selected but {m}_dim is None")
    return [m for m in MODALITIES if m in set(modalities)]


def build_shapes(info, config, audio_dim=None, vision_dim=None):
    """`build()` shapes from a dataset's info and a run config's `max_lengths` (aligned data: audio/vision
    have the text's length)."""
    from keras_mmsa.data.pipeline import padded_lengths

    lengths = padded_lengths(info, config.max_lengths)
    return {
        "token_ids": (None, lengths.get("text")),
        "audio": (None, lengths.get("audio"), audio_dim),
        "vision": (None, lengths.get("vision"), vision_dim),
    }


def frozen_sequence_encoder(text_backbone, *, owner):
    """A frozen `TextEncoder` giving the backbone's last-layer sequence `[B, L, H]` (the BERT features that
    MMSA's pickles store for the non-BERT models); a given `TextEncoder` must be in `"sequence"` mode."""
    from keras_mmsa.layers.text_encoder import TextEncoder

    if isinstance(text_backbone, TextEncoder):
        if text_backbone.output_mode != "sequence":
            raise ValueError(
                f"{owner} reads the text backbone's sequence output; got a TextEncoder with "
                f"output_mode={text_backbone.output_mode!r}"
            )
        encoder = text_backbone
    else:
        encoder = TextEncoder(text_backbone, output_mode="sequence", name="text_encoder")
    encoder.trainable = False
    return encoder


def check_aligned_frames(owner, x, modality, dim, length):
    """Raises unless `x[modality]` is word-aligned: `[B, length, dim]`, one frame per position of
    'token_ids' (None sizes are not checked). `owner` names the model in the message."""
    if modality not in x:
        raise KeyError(
            f"{owner} uses {modality!r} but the inputs have no {modality!r} key (got {sorted(x)}); "
            f"load the data with that modality"
        )
    shape = tuple(x[modality].shape)
    if (
        len(shape) != 3
        or (length is not None and shape[1] is not None and shape[1] != length)
        or (shape[2] is not None and shape[2] != dim)
    ):
        raise ValueError(
            f"{owner} reads word-aligned inputs: {modality!r} must be [B, {length}, {dim}] (one frame per "
            f"position of 'token_ids', {length} positions); got {list(shape)}. Use an aligned dataset "
            f"(`keras_mmsa.data.dataset_info(name).aligned`, e.g. mosi_aligned)"
        )
