"""`RunConfig`: the one configuration object of a run, saved as `config.json` in the run directory."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from keras_mmsa.data.spec import MODALITIES


@dataclasses.dataclass
class RunConfig:
    """Everything needed to reproduce a run.

    `model` and `train` hold the method's hyper-parameters and optimisation settings; `resolved()` fills them
    from the method's preset for the dataset (`keras_mmsa.configs`), so the saved `config.json` is complete.

    Attributes:
        method: registered method name (`keras_mmsa.training.registry.METHODS`).
        dataset: a config name of the TFDS builder `msa` ("sample", "mosi_unaligned", "mosi_sdk", ...).
        manual_dir: folder with the user's dataset files (not needed for "sample").
        data_dir: where TFDS keeps prepared datasets (default `$KMSA_DATA_DIR` or `~/tensorflow_datasets`).
        text_backbone: "tiny", a KerasHub preset name or a local preset / Hugging-Face directory
            (None: the preset's).
        modalities: subset of ("text", "audio", "vision"); None: every modality the dataset has.
        max_lengths: padded lengths overriding the dataset's, e.g. {"audio": 200}.
        seed: the run's seed (`keras.utils.set_random_seed`, data order, dropout).
        deterministic: enable TensorFlow op determinism (slower).
        jit_compile: XLA-compile the train/test steps.
        name: run name (default: "<method>_<dataset>_seed<seed>").
        model: the method's and its base model's hyper-parameters (constructor arguments).
        train: optimisation settings (batch_size, epochs, learning rates, patience, ...).
    """

    method: str
    dataset: str = "sample"
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
        return self.name or f"{self.method}_{self.dataset}_seed{self.seed}"

    def resolved(self):
        """A copy with `model`, `train` and `text_backbone` completed from the method's preset."""
        from keras_mmsa.training import registry

        method = registry.get_method(self.method)
        preset = method.preset(self.dataset)
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
        if self.modalities is not None:
            bad = [m for m in self.modalities if m not in MODALITIES]
            if bad:
                raise ValueError(f"unknown modalities {bad}; choose from {MODALITIES}")
        return dataclasses.replace(
            self,
            model=model,
            train=train,
            text_backbone=self.text_backbone or preset["text_backbone"],
            name=self.run_name,
        )
