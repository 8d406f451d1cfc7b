"""Shared pytest set-up: quiet TensorFlow, the TensorFlow backend, and the optional real-MOSI folder."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Nothing in the default suite may touch the network (TFDS GCS look-ups, hub downloads).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent


def real_mosi_dir() -> pathlib.Path:
    """The real CMU-MOSI SDK files (never committed): $KMSA_MOSI_DIR or ../shared/data/mosi."""
    return pathlib.Path(os.environ.get("KMSA_MOSI_DIR", REPO.parent / "shared" / "data" / "mosi"))


@pytest.fixture
def mosi_dir() -> pathlib.Path:
    d = real_mosi_dir()
    if not (d / "CMU_MOSI_Opinion_Labels.csd").exists():
        pytest.skip(f"real CMU-MOSI files not found in {d} (set KMSA_MOSI_DIR)")
    return d
