"""Fixtures for the TUI tests: a project in a temp folder, settings isolated from the user's."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from aitk_tui.project import Project

REPO = Path(__file__).resolve().parents[2]
FIXED_TIME = datetime(2026, 11, 25, 9, 30, 0)


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory, monkeypatch):
    """Never read the developer's ~/.config/aitk: point XDG_CONFIG_HOME at a temp dir."""
    xdg = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for var in ("AITK_TUI_THEME", "AITK_TUI_ANIMATIONS", "AITK_TUI_KEYMAP"):
        monkeypatch.delenv(var, raising=False)
    return xdg


@pytest.fixture
def ui_project(tmp_path) -> Project:
    root = tmp_path / "proj"
    shutil.copytree(REPO / "infra", root / "infra")
    return Project(root)


@pytest.fixture
def fixed_clock():
    return lambda: FIXED_TIME


async def settle(pilot, extra: float = 0.0) -> None:
    """Let messages drain and every worker finish (the deterministic point to look at the screen)."""
    app = pilot.app
    await pilot.pause()
    for _ in range(20):  # a handler may start the next worker: go round until none is left
        if all(w.is_finished for w in app.workers):
            break
        await app.workers.wait_for_complete()
        await pilot.pause()
    if extra:
        await pilot.pause(extra)


@pytest.fixture
def make_app(ui_project, fixed_clock):
    """App factory over a scripted session: ``app, session = make_app(**session_kwargs)``."""
    from aitk_tui.ui.app import create_app
    from aitk_tui.ui.settings import UISettings

    from .fakes import FakeSession, factory_for

    def make(*, project=None, session=None, settings=None, chat_client_factory=None, **session_kwargs):
        project = project or ui_project
        session = session or FakeSession(project, **session_kwargs)
        app = create_app(project, session_factory=factory_for(session), clock=fixed_clock,
                         settings=settings or UISettings.load(), chat_client_factory=chat_client_factory)
        return app, session

    return make
