"""keras_mmsa: mutual-information-based multimodal sentiment analysis in Keras 3 / TensorFlow.

```python
import keras_mmsa as kmsa
ds = kmsa.data.load("sample", "train", batch_size=32)
model = kmsa.models.MMIM.from_config_name("sample")
model.compile(**kmsa.models.MMIM.default_optimizers("sample"))
model.fit(ds, epochs=1)
```

Subpackages are imported on first use, so `import keras_mmsa` (and `scripts/*.py --help`) stays fast.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "backbones",
    "configs",
    "data",
    "engine",
    "estimators",
    "layers",
    "metrics",
    "models",
    "training",
)
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"keras_mmsa.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_mmsa' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
