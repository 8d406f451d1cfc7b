"""Alias of `keras_mmsa_datasets.msa.sample`, the synthetic `sample` generator.

The generator lives with the TFDS builder, which imports nothing from `keras_mmsa` (only `keras_mmsa.data` imports
the builder). This alias keeps `keras_mmsa.data.sample` working: `from keras_mmsa.data import sample`,
`from keras_mmsa.data.sample import generate_split` and `python -m keras_mmsa.data.sample` all reach the same
module object. New code imports `keras_mmsa_datasets.msa.sample`.
"""

import sys

from keras_mmsa_datasets.msa import sample as _sample

if __name__ == "__main__":
    _sample.main()
else:
    sys.modules[__name__] = _sample
