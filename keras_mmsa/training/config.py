"""`RunConfig`: the one configuration object of a run, saved as `config.json` in the run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import pathlib
import re

from keras_mmsa.data.spec import MODALITIES

# The flag that sets a field, named in the errors about it.
_FLAGS = {
    "seed": "--seed",
    "name": "--name",
    "dataset": "--dataset",
    "unlabeled_dataset": "--unlabeled-dataset",
    "manual_dir": "--manual-dir",
    "data_dir": "--data-dir",
    "text_backbone": "--text-backbone",
    "modalities": "--modalities",
    "deterministic": "--deterministic",
    "jit_compile": "--no-jit",
    "train.epochs": "--epochs",
    "train.batch_size": "--batch-size",
}
# Field -> its default, whose type is the type every value must have (None: str or None).
_FIELDS = dict(
    method="",
    dataset="",
    unlabeled_dataset=None,
    manual_dir=None,
    data_dir=None,
    text_backbone=None,
    seed=0,
    deterministic=False,
    jit_compile=True,
    name=None,
)
_POSITIVE = {"train.epochs", "train.batch_size", "train.log_every"}  # ints >= 1
_NULLABLE = {"train.patience", "train.lr_patience"}  # None turns early stopping / LR decay off
# Train settings that say how long or how verbosely (or how fast) a run goes, not what it learns: they stay out
# of the default run name, so `--epochs` on an existing run is refused with the --name to use instead of forking silently.
_UNNAMED_TRAIN = {"epochs", "log_every", "cache_text_features"}
_NAME = re.compile(r"^[^/\\\x00]+$")


@dataclasses.dataclass
class RunConfig:
    """Everything needed to reproduce a run.

    `model` and `train` hold the method's hyper-parameters and optimisation settings; `resolved()` fills them
    from the method's preset for the dataset (`keras_mmsa.configs`), so the saved `config.json` is complete.

    Attributes:
        method: registered method name (`keras_mmsa.training.registry.METHODS`).
        dataset: a config name of the TFDS builder `msa` ("sample", "mosi_unaligned", "mosi_sdk", ...); None
            (default): "sample", or "sample_aligned" for a method that needs word-aligned inputs
            (`requires_aligned`, see `method_requires_aligned`), which refuses an unaligned dataset.
        unlabeled_dataset: None, or a config name of the builder `msa` whose train split is mixed into the
            training stream as unlabeled examples (per-sample weight 0, labels ignored; the labeled ones get
            weight 1), padded to the dataset's lengths; it must have the same audio/vision sizes (read from
            the same `manual_dir`). Methods keep weight-0 examples out of their task loss (MIRD's Algorithm 1).
        manual_dir: folder with the user's dataset files (not needed for "sample").
        data_dir: where TFDS keeps prepared datasets (default `$KMSA_DATA_DIR` or `~/tensorflow_datasets`).
        text_backbone: "tiny", a KerasHub preset name or a local preset / Hugging-Face directory
            (None: the preset's).
        modalities: subset of ("text", "audio", "vision"); None: every modality the dataset has.
        max_lengths: padded lengths overriding the dataset's, e.g. {"audio": 200}.
        seed: the run's seed (`keras.utils.set_random_seed`, data order, dropout).
        deterministic: enable TensorFlow op determinism (slower).
        jit_compile: XLA-compile the train/test steps.
        name: run name, one folder inside the workdir (default, set by `resolved()`:
            "<method>_<dataset>[_<modalities>][_<backbone>][_<hash>]_seed<seed>": the modalities and backbone
            when given and not the preset's, a 6-hex hash of the model/train settings that differ from the
            preset (except epochs and log_every), so runs that learn different things get different folders).
        model: the method's and its base model's hyper-parameters (constructor arguments).
        train: optimisation settings (batch_size, epochs, learning rates, patience, ...).
    """

    method: str
    dataset: str | None = None
    unlabeled_dataset: str | None = None
    manual_dir: str | None = None
    data_dir: str | None = None
    text_backbone: str | None = None
    modalities: list[str] | None = None
    max_lengths: dict | None = None
    seed: int = 1111
    deterministic: bool = False
    jit_compile: bool = True
    name: str | None = None
    model: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            pathlib.Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data, *, source="config"):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path):
        path = pathlib.Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"config file {path}: expected a JSON object, got {type(data).__name__}"
            )
        return cls.from_dict(data, source=str(path))

    # ------------------------------------------------------------------ overrides
    def with_overrides(self, assignments):
        """Applies `key=value` strings: top-level keys (`seed=3`) or dotted ones (`train.lr_main=1e-3`,
        `model.alpha=0.5`); values are parsed as JSON when they parse, else kept as strings."""
        data = self.to_dict()
        for item in assignments or ():
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            key, raw = item.split("=", 1)
            key = key.strip()
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            parts = key.split(".")
            if parts[0] not in data:
                raise ValueError(f"--set {key}: unknown key {parts[0]!r}; known: {sorted(data)}")
            if len(parts) == 1:
                data[key] = value
            elif len(parts) == 2 and parts[0] in ("model", "train", "max_lengths"):
                section = data[parts[0]] if data[parts[0]] is not None else {}
                section[parts[1]] = value
                data[parts[0]] = section
            else:
                raise ValueError(
                    f"--set {key}: only model.<name>, train.<name> and max_lengths.<m> nest"
                )
        return type(self).from_dict(data)

    # ------------------------------------------------------------------ resolution
    @property
    def run_name(self):
        """The run's folder name: `name` (which `resolved()` always sets) or the plain default."""
        dataset = self.dataset if self.dataset is not None else self._default_dataset()
        return self.name or f"{self.method}_{dataset}_seed{self.seed}"

    def _default_dataset(self):
        from keras_mmsa.training import registry

        method = registry.get_method(self.method)
        return ALIGNED_SAMPLE if method_requires_aligned(method, self.model) else SAMPLE

    def resolved(self):
        """A validated copy with `model`, `train`, `text_backbone` and `name` completed from the method's preset.

        Raises a ValueError naming the key, the value and the expected type (and the flag that sets it) for any
        setting of the wrong type or out of range, before anything is built or written.
        """
        if self.dataset is None:
            if not isinstance(self.method, str):
                raise ValueError(f"method={self.method!r}: expected a string (--method)")
            return dataclasses.replace(self, dataset=self._default_dataset()).resolved()
        method, preset = self._method_and_preset()
        _check_alignment(self.method, method, self.dataset, self.model)
        model = dict(preset["model"])
        known = set(model) | set(method.model_keys())
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ValueError(
                f"model settings {unknown} are not {self.method} hyper-parameters; known: {sorted(known)}"
            )
        model.update(self.model)
        train = dict(preset["train"])
        unknown = sorted(set(self.train) - set(train))
        if unknown:
            raise ValueError(f"train settings {unknown} are unknown; known: {sorted(train)}")
        train.update(self.train)
        out = dataclasses.replace(
            self,
            model=model,
            train=train,
            text_backbone=self.text_backbone or preset["text_backbone"],
        )
        out._validate(_model_defaults(method, preset), preset["train"])
        return dataclasses.replace(
            out, name=self.name or out._default_name(self._method_and_preset(naming=True)[1])
        )

    def default_name(self, *, with_seed=True):
        """The default run name of this config (without `_seed<seed>`: the stem `run_seeds` extends)."""
        out = self.resolved()
        _, preset = out._method_and_preset(naming=True)
        return out._default_name(preset, with_seed=with_seed)

    def _method_and_preset(self, *, naming=False):
        """The method class and the preset that fills the settings. A method whose preset depends on its own
        model settings (`preset_for_settings(dataset, model)`; MDM: the preset of the base model it wraps)
        gets that one, except for naming (`naming=True`): names hash what differs from its plain preset, so
        another base model gives another name."""
        from keras_mmsa.training import registry

        if not isinstance(self.method, str):
            raise ValueError(f"method={self.method!r}: expected a string (--method)")
        if not isinstance(self.dataset, str):
            raise ValueError(f"dataset={self.dataset!r}: expected a string (--dataset)")
        method = registry.get_method(self.method)
        if not naming and hasattr(method, "preset_for_settings"):
            return method, method.preset_for_settings(self.dataset, self.model)
        return method, method.preset(self.dataset)

    def _default_name(self, preset, *, with_seed=True):
        parts = [self.method, self.dataset]
        if self.unlabeled_dataset is not None:
            parts.append(f"plus-{self.unlabeled_dataset}")
        if self.modalities is not None:
            parts.append("-".join(self.modalities))
        backbone = self.text_backbone != preset["text_backbone"]
        if backbone:
            tail = pathlib.PurePath(str(self.text_backbone).rstrip("/\\")).name
            parts.append(re.sub(r"[^A-Za-z0-9._-]+", "-", tail)[:32].strip(".") or "backbone")
        changed = {
            "model": _changed(self.model, preset["model"]),
            "train": _changed(self.train, preset["train"], skip=_UNNAMED_TRAIN),
        }
        if changed["model"] or changed["train"] or (backbone and "/" in str(self.text_backbone)):
            changed["text_backbone"] = self.text_backbone if backbone else None
            parts.append(_short_hash(changed))
        if with_seed:
            parts.append(f"seed{self.seed}")
        return "_".join(parts)

    def _validate(self, model_defaults, train_defaults):
        for key, default in _FIELDS.items():
            _check(key, getattr(self, key), default, nullable=default is None)
        if self.seed < 0:
            _fail("seed", self.seed, "an int >= 0")
        if self.name is not None and (not _NAME.match(self.name) or self.name in (".", "..")):
            raise ValueError(
                f"--name {self.name!r}: a run name must be one folder name inside the workdir "
                "(no '/', '\\', '.' or '..'); pass the parent folder as --workdir"
            )
        if self.modalities is not None:
            if not isinstance(self.modalities, list) or not all(
                isinstance(m, str) for m in self.modalities
            ):
                _fail(
                    "modalities",
                    self.modalities,
                    'a list of modality names, e.g. ["text", "audio"]',
                )
            bad = [m for m in self.modalities if m not in MODALITIES]
            if bad:
                raise ValueError(f"unknown modalities {bad}; choose from {MODALITIES}")
        if self.max_lengths is not None:
            if not isinstance(self.max_lengths, dict):
                _fail("max_lengths", self.max_lengths, 'a JSON object, e.g. {"audio": 200}')
            for m, length in self.max_lengths.items():
                if m not in MODALITIES:
                    raise ValueError(f"max_lengths.{m}: unknown modality; choose from {MODALITIES}")
                _check(f"max_lengths.{m}", length, 0)
                if length < 1:
                    _fail(f"max_lengths.{m}", length, "an int >= 1")
        for section, defaults in (("model", model_defaults), ("train", train_defaults)):
            values = getattr(self, section)
            if not isinstance(values, dict):
                _fail(section, values, "a JSON object of settings")
            for key, value in values.items():
                full = f"{section}.{key}"
                _check(full, value, defaults.get(key), nullable=full in _NULLABLE)
                if full in _POSITIVE and value < 1:
                    _fail(full, value, "an int >= 1")


SAMPLE, ALIGNED_SAMPLE = "sample", "sample_aligned"


def method_requires_aligned(method, model=None):
    """Whether a registered method class needs word-aligned inputs (one audio/vision frame per text token).

    True when the class, or the base model class it wraps, sets `requires_aligned = True`
    (`MultimodalBackbone.requires_aligned` is False). A wrapper method names its base model class with a
    class attribute `base_model_class`, or a classmethod `base_model_class(model_settings)` when the run's
    model settings choose it.
    """
    if getattr(method, "requires_aligned", False):
        return True
    base = getattr(method, "base_model_class", None)
    if base is not None and not isinstance(base, type) and callable(base):
        base = base(dict(model or {}))
    return bool(getattr(base, "requires_aligned", False))


def aligned_datasets():
    """The `msa` builder configs whose loader yields token-aligned audio/vision (alignment words/tokens)."""
    from keras_mmsa_datasets.msa import msa_dataset_builder

    return tuple(c.name for c in msa_dataset_builder.BUILDER_CONFIGS if c.alignment != "none")


def _check_alignment(name, method, dataset, model):
    if not method_requires_aligned(method, model):
        return
    from keras_mmsa_datasets.msa import msa_dataset_builder

    config = msa_dataset_builder.CONFIGS_BY_NAME.get(dataset)
    if config is not None and config.alignment == "none":
        raise ValueError(
            f"--method {name} needs word-aligned audio/vision (one frame per text token), and dataset "
            f"{dataset!r} is not aligned; choose an aligned dataset: {', '.join(aligned_datasets())} "
            "(or an sdk_config(..., align='words'))"
        )


def _model_defaults(method, preset):
    """The preset's model settings plus the constructor defaults of the keys the preset leaves out."""
    defaults = dict(preset["model"])
    try:
        params = inspect.signature(method.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for key in method.model_keys():
        param = params.get(key)
        if key not in defaults and param is not None and param.default is not param.empty:
            defaults[key] = param.default
    return defaults


def _changed(values, defaults, skip=()):
    return {
        k: v for k, v in values.items() if k not in skip and (k not in defaults or v != defaults[k])
    }


def _short_hash(data):
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _fail(key, value, expected):
    flag = _FLAGS.get(key)
    how = f"; set it with {flag} or --set {key}=..." if flag else f"; set it with --set {key}=..."
    raise ValueError(f"{key}={value!r}: expected {expected}{how}")


def _check(key, value, default, *, nullable=False):
    """Refuses `value` unless it has the type of `default` (float accepts int; None accepts anything)."""
    if value is None and nullable:
        return
    if default is None:
        if nullable and not isinstance(value, str):  # the optional string fields
            _fail(key, value, "a string")
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            _fail(key, value, "a bool (true or false)")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "an int")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, "a float")
        if not math.isfinite(value):
            _fail(key, value, "a finite float")
    elif isinstance(default, str):
        if not isinstance(value, str):
            _fail(key, value, "a string")
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            _fail(key, value, "a list (JSON, e.g. [])")
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            _fail(key, value, "a JSON object")
