"""The MSA metric suite: the field's regression and classification metrics for MOSI/MOSEI and SIMS.

Three modules, one concern each (all names are re-exported here):

- `reference`: `msa_metrics(y_true, y_pred, family=...)`, the numpy reference on whole arrays (a `dict` of
  Python floats), and the definitions of every key (`metric_keys(family)`; its docstring defines them, DESIGN §3
  "Metrics");
- `streaming`: `MSAMetrics` (all keys, `result()` is a dict) and `MSAMetric` (one key) / `msa_keras_metrics`,
  Keras metrics with streaming state for `model.compile(metrics=...)`, `evaluate` and a custom `test_step` under
  `jit_compile=True`; same numbers as the reference;
- `reporting`: `aggregate_runs` (mean ± std over seeds), `format_paper` and `format_markdown` (the papers'
  tables, accuracies and F1 in percent).

```python
from keras_mmsa import metrics
table = metrics.msa_metrics(y_true, y_pred, family="mosi")      # {"mae": ..., "corr": ..., "acc7": ..., ...}
print(metrics.format_markdown({"seed 1111": table}))
```
"""

from keras_mmsa.metrics.reference import (
    FAMILIES,
    MOSI_KEYS,
    MOSI_RANGES,
    SIMS_EDGES,
    SIMS_KEYS,
    UndefinedMetricWarning,
    metric_keys,
    mosi_classes,
    msa_metrics,
    sims_classes,
    weighted_f1,
)
from keras_mmsa.metrics.reporting import (
    DISPLAY_NAMES,
    RAW_KEYS,
    aggregate_runs,
    format_markdown,
    format_paper,
)
from keras_mmsa.metrics.streaming import MSAMetric, MSAMetrics, msa_keras_metrics

__all__ = [
    "DISPLAY_NAMES",
    "FAMILIES",
    "MOSI_KEYS",
    "MOSI_RANGES",
    "RAW_KEYS",
    "SIMS_EDGES",
    "SIMS_KEYS",
    "MSAMetric",
    "MSAMetrics",
    "UndefinedMetricWarning",
    "aggregate_runs",
    "format_markdown",
    "format_paper",
    "metric_keys",
    "mosi_classes",
    "msa_keras_metrics",
    "msa_metrics",
    "sims_classes",
    "weighted_f1",
]
