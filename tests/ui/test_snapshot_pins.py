"""The snapshot SVGs are exact renderings by these packages: the dev extra pins each one,
and the test environment has exactly those versions (else a snapshot diff would be an
upgrade's doing, silently)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement

from .conftest import REPO

SNAPSHOT_PACKAGES = ("textual", "rich", "syrupy", "pytest-textual-snapshot")


def test_what_the_snapshots_depend_on_is_pinned_and_installed():
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pins = {}
    for line in dev:
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[req.name] = specs[0].version
    for name in SNAPSHOT_PACKAGES:
        assert name in pins, f"{name} is not pinned (==) in the dev extra"
        assert version(name) == pins[name], f"{name} {version(name)} is installed, the snapshots were made with {pins[name]}"
