"""keras_mmsa: mutual-information-based multimodal sentiment analysis in Keras 3 / TensorFlow.

```python
import keras_mmsa as kmsa
ds = kmsa.data.load("sample", "train", batch_size=32)
model = kmsa.models.MMIM.from_config_name("sample")
model.compile(**kmsa.models.MMIM.default_optimizers("sample"))
model.fit(ds, epochs=1)
```
"""

__version__ = "0.1.0"

from keras_mmsa import (  # noqa: E402
    backbones,
    configs,
    data,
    estimators,
    layers,
    metrics,
    models,
    training,
)

__all__ = [
    "backbones",
    "configs",
    "data",
    "estimators",
    "layers",
    "metrics",
    "models",
    "training",
]
