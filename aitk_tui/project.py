"""Finds the project folder and names the files aitk reads and writes in it.

A project is a folder holding ``infra/`` (AI Toolkit layout) and usually
``inference_server/``. aitk keeps its own state under ``.aitk/`` (git-ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import AitkError


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def infra_dir(self) -> Path:
        return self.root / "infra"

    @property
    def parameters_path(self) -> Path:
        return self.root / "infra" / "provision" / "inference.parameters.json"

    @property
    def template_path(self) -> Path:
        """The ARM JSON that is deployed (compiled from inference.bicep)."""
        return self.root / "infra" / "provision" / "inference.json"

    @property
    def bicep_path(self) -> Path:
        return self.root / "infra" / "provision" / "inference.bicep"

    @property
    def config_path(self) -> Path:
        return self.root / "infra" / "inference.config.json"

    @property
    def server_dir(self) -> Path:
        return self.root / "inference_server"

    @property
    def state_dir(self) -> Path:
        return self.root / ".aitk"

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def local_cloud_dir(self) -> Path:
        return self.state_dir / "local"


def find_project(start: Path | None = None) -> Project:
    """The nearest folder at or above ``start`` that has ``infra/provision/``.

    Falls back to ``start`` itself (so ``aitk init`` and a bare folder still work).
    """
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "infra" / "provision").is_dir():
            return Project(folder)
    return Project(start)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise AitkError(f"The {what} is missing.", f"expected {path}; run `aitk init` to create the project files")
    return path
