"""pyproject lists every package (the datasets/ mapping rules out automatic discovery)."""

import pathlib

import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_every_python_package_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for root, prefix in (("keras_mmsa", "keras_mmsa"), ("datasets", "keras_mmsa_datasets")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root)
            found.add(".".join((prefix, *rel.parts)) if rel.parts else prefix)
    assert found == listed
