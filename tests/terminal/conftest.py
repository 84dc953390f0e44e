"""Fixtures for the pseudo-terminal tests: a temp project and the real ``aitk`` on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from .harness import AitkTerminal


@pytest.fixture
def aitk_terminal(local_project: Path, tmp_path: Path) -> Iterator[Callable[..., AitkTerminal]]:
    """``aitk_terminal(*args, project=local_project)``: a started :class:`AitkTerminal`,
    closed after the test (F10, kill, ``aitk local stop`` for ``--local``)."""
    terminals: list[AitkTerminal] = []

    def start(*args: str, project: Path | None = None, **kw) -> AitkTerminal:
        term = AitkTerminal(project or local_project, *args, config_home=tmp_path / "xdg", **kw)
        terminals.append(term)
        return term.start()

    yield start
    for term in reversed(terminals):
        term.close()
