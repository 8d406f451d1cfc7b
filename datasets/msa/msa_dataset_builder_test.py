"""msa builder on `tfds.testing.DatasetBuilderTestCase`: every config builds offline from `dummy_data/`."""

import tensorflow_datasets as tfds
from keras_mmsa_datasets.msa import msa_dataset_builder

FILE_CONFIGS = [c.name for c in msa_dataset_builder.BUILDER_CONFIGS if c.source != "sample"]


class MsaFileConfigsTest(tfds.testing.DatasetBuilderTestCase):
    """Pickle, SDK and label-csv configs (and a user-made `sdk_config`) on the tiny files in dummy_data/."""

    DATASET_CLASS = msa_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = [
        *FILE_CONFIGS,
        msa_dataset_builder.sdk_config(
            "mosi_covarep_facet",
            audio_csd="CMU_MOSI_COVAREP.csd",
            audio_dim=74,
            vision_csd="CMU_MOSI_Visual_Facet_41.csd",
            vision_dim=35,
        ),
    ]
    SPLITS = {"train": 4, "validation": 2, "test": 3}


class MsaSampleTest(tfds.testing.DatasetBuilderTestCase):
    """The synthetic `sample` config: no manual files, the full split sizes."""

    DATASET_CLASS = msa_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["sample"]
    SPLITS = {"train": 600, "validation": 150, "test": 150}


if __name__ == "__main__":
    tfds.testing.test_main()
