"""Paired comparison: `python scripts/compare.py --method mdm --seeds 1111,1112,1113` trains the configuration
with and without its penalty per seed and writes mean ± std and the Mann–Whitney U p-value per metric. See --help
and keras_mmsa.training.cli.compare_main."""

import sys

from keras_mmsa.training.cli import compare_main

if __name__ == "__main__":
    sys.exit(compare_main())
