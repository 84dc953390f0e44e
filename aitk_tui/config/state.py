"""Per-project choices aitk remembers (``.aitk/state.json``): subscription, group, cloud."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..fsutil import atomic_write_text


class ProjectState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subscription_id: str | None = None
    subscription_name: str | None = None
    resource_group: str | None = None
    location: str | None = None
    # Names this project's provisioning deployment and tags what it creates (cloud/ownership.py).
    project_id: str | None = None

    @field_validator("subscription_id", "resource_group", mode="after")
    @classmethod
    def _no_path(cls, value: str | None, info: object) -> str | None:
        """A remembered name that could address something else in a request path (``..``,
        ``rg/x``) is dropped, not used; a group name must also be one Azure accepts (the
        subscription's own GUID rule is checked where a request is made, accounts.py)."""
        from . import naming

        if value is None or value in (".", "..") or "/" in value or "\\" in value or "%" in value:
            return None
        if getattr(info, "field_name", "") == "resource_group":
            try:
                naming.resource_group_name(value)
            except naming.NameError_:
                return None
        return value

    @classmethod
    def load(cls, path: Path) -> "ProjectState":
        """A missing or unreadable state file gives empty state (it holds only preferences)."""
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError, RecursionError):
            return cls()

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), self.model_dump_json(indent=2) + "\n")

    @classmethod
    def update(cls, path: Path, **values: str | None) -> "ProjectState":
        """Set ``values`` (None clears a choice) over what the file holds and write it back
        atomically; OSError is the caller's to report or ignore (these are preferences)."""
        state = cls.load(path)
        for key, value in values.items():
            if key not in cls.model_fields:
                raise TypeError(f"ProjectState has no field {key!r}")
            setattr(state, key, value)
        state.save(path)
        return state
