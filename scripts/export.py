"""Thin CLI: see `python scripts/export.py --help` and keras_mmsa.training.cli.export_main."""

import sys

from keras_mmsa.training.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
