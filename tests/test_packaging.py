"""What the wheel holds: every package pyproject lists (the datasets/ mapping rules out automatic discovery), and
no benchmark code (the benchmarks live in the top-level `benchmarks/` folder, outside the package)."""

import importlib.metadata
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())
NOT_INSTALLED = ("benchmark", "real_mosi", "torch_reference")


def _is_benchmark(path):
    return any(word in str(path).lower() for word in NOT_INSTALLED)


def test_every_python_package_is_listed():
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    found = set()
    for root, prefix in (("keras_mmsa", "keras_mmsa"), ("datasets", "keras_mmsa_datasets")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root)
            found.add(".".join((prefix, *rel.parts)) if rel.parts else prefix)
    assert found == listed


def test_packaged_folders_hold_no_benchmark_code():
    """The fast check: no listed package is a benchmark, and nothing under the packaged folders is one."""
    setuptools_config = CONFIG["tool"]["setuptools"]
    assert not [p for p in setuptools_config["packages"] if _is_benchmark(p)]
    assert sorted(setuptools_config["package-dir"].values()) == ["datasets", "keras_mmsa"]
    for folder in setuptools_config["package-dir"].values():
        files = [p.relative_to(REPO) for p in (REPO / folder).rglob("*") if p.is_file()]
        assert not [p for p in files if _is_benchmark(p)], folder


def _build_wheel(tmp_path):
    """Builds the wheel from a copy of the working tree (setuptools' build/ must not leak stale files into it)."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".pypath",
            ".venv",
            "venv",
            "build",
            "dist",
            "runs",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
            "tfds_data",
        ),
    )
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(tmp_path / "dist"),
        str(src),
    ]
    try:
        setuptools_major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        setuptools_major = 0
    isolated = setuptools_major < 77  # pyproject's build requirement (SPDX `license`)
    if not isolated:
        cmd.insert(5, "--no-build-isolation")  # offline: the installed setuptools builds it
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and isolated and "matching distribution" in out.stdout + out.stderr:
        pytest.skip(
            "setuptools>=77 is neither installed nor downloadable (offline): no wheel built"
        )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    (wheel,) = (tmp_path / "dist").glob("keras_mmsa-*.whl")
    return zipfile.ZipFile(wheel).namelist(), src


def test_wheel_holds_the_library_and_no_benchmark_code(tmp_path):
    names, src = _build_wheel(tmp_path)
    assert not [n for n in names if _is_benchmark(n)]
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"keras_mmsa", "keras_mmsa_datasets"}
    # every module of the library and of the TFDS builder, nothing else
    modules = {
        f"keras_mmsa/{p.relative_to(src / 'keras_mmsa')}"
        for p in (src / "keras_mmsa").rglob("*.py")
    }
    modules |= {
        f"keras_mmsa_datasets/{p.relative_to(src / 'datasets')}"
        for p in (src / "datasets").rglob("*.py")
    }
    assert {n for n in names if n.endswith(".py")} == modules
    assert "keras_mmsa/training/run.py" in modules
