"""Every module of the project imports: a name moved to another module (a merge, a refactor)
is found here, not by the user who runs the one command that imports it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("tools", "assistant", "posebank", "evals")


def _modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return names


def test_the_walk_finds_the_modules():
    assert {"tools.mcp.drawing", "tools.server.follow", "assistant.gen_cli"} <= set(_modules())


@pytest.mark.parametrize("name", _modules())
def test_a_module_imports(name):
    importlib.import_module(name)
