"""MMIM on the real CMU-MOSI text + audio and its text-only ablation, several seeds, as a results table.

`python scripts/benchmark_real_mosi.py --manual-dir ../shared/data/mosi --out benchmarks/results/real_mosi`
(see --help and `keras_mmsa/training/real_mosi.py`).
"""

import sys

from keras_mmsa.training.real_mosi import main

if __name__ == "__main__":
    sys.exit(main())
