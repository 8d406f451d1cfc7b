"""Thin CLI: see `python scripts/evaluate.py --help` and keras_mmsa.training.cli.evaluate_main."""

import sys

from keras_mmsa.training.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
