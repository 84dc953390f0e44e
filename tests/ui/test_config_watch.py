"""infra/inference.config.json edited while the app runs is read again: broken, the app says
so and stops offering what needs it; fixed, it is used again (it was read only at start)."""

from __future__ import annotations

import json

from .conftest import settle
from .fakes import write_config


async def _until(pilot, predicate, what: str) -> None:
    for _ in range(150):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_config_broken_then_fixed_while_the_app_runs(make_app, ui_project):
    write_config(ui_project)
    good = ui_project.config_path.read_text()
    app, _ = make_app()
    app.CONFIG_WATCH_S = 0.1
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.state.config.ACA_APP_NAME == "aiacaappdemo1" and app.state.why_not("deploy") is None

        ui_project.config_path.write_text(good[:40])  # cut short, as a bad save leaves it
        await _until(pilot, lambda: app.state.config_error is not None, "the broken config to be noticed")
        assert "not valid JSON" in app.state.config_error
        # App.notify posts a message: the notice is listed once the app has processed it.
        await _until(pilot, lambda: any(n.title == "Config changed" for n in app._notifications),
                     "the notice that the config changed")
        assert app.state.why_not("deploy") is not None
        assert ui_project.config_path.read_text() == good[:40]  # noticed, never rewritten

        fixed = json.loads(good) | {"ACA_APP_NAME": "fixed-by-hand"}
        ui_project.config_path.write_text(json.dumps(fixed))
        await _until(pilot, lambda: app.state.config is not None, "the fixed config to be read")
        assert app.state.config.ACA_APP_NAME == "fixed-by-hand" and app.state.config_error is None
        assert app.state.why_not("deploy") is None
