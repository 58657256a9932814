"""What ``pip install .`` ships: every package folder of the source tree (a folder left out of pyproject's list
imports from a checkout, where the tests run, and fails in an installed copy, where users run)."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = {"salient_timm": "salient_timm", "salient_analysis": "analysis", "salient_train": "salient_train"}


def _listed_packages() -> set:
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def _source_packages() -> set:
    found = set()
    for name, folder in SOURCES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    return found


def test_every_package_folder_is_installed():
    assert _source_packages() == _listed_packages()
