"""CMU-MOSI / CMU-MOSEI / CH-SIMS features as a TFDS dataset (`tfds new` layout), name `msa`.

Importing this package registers the builder, so `tfds.builder("msa", config=...)` works; `prepare` builds a
config offline and `sdk_config` makes configs over other CMU-MultimodalSDK feature sequences.
"""

from keras_mmsa_datasets.msa.msa_dataset_builder import (
    BUILDER_CONFIGS,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    MissingManualFilesError,
    MsaConfig,
    ensure_prepared,
    get_config,
    prepare,
    sdk_config,
)
from keras_mmsa_datasets.msa.readers import SPLITS, MsaDataError

__all__ = [
    "BUILDER_CONFIGS",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "SPLITS",
    "Builder",
    "MissingManualFilesError",
    "MsaConfig",
    "MsaDataError",
    "ensure_prepared",
    "get_config",
    "prepare",
    "sdk_config",
]
