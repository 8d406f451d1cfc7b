"""Train a method: `python scripts/train.py --method mmim` (bundled sample, offline). See --help."""

import sys

from keras_mmsa.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
