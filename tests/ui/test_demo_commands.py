"""Palette: Copy API key, Copy snippet (curl/Python/JavaScript) over OSC 52, and Open endpoint
in browser (or, with no browser here, the URL in a notification and the activity log)."""

from __future__ import annotations

import pytest

from aitk_tui.ui.commands import COMMANDS_BY_ID

from .conftest import settle
from .fakes import write_config


def _messages(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_copy_api_key_and_snippets_go_to_the_clipboard_never_on_screen(make_app, ui_project, tiny_server):
    write_config(ui_project, endpoint=tiny_server.base_url)
    app, session = make_app()
    session.api_key_value = tiny_server.api_key
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.main.run_action("copy_api_key")
        await settle(pilot)
        assert app.clipboard == tiny_server.api_key
        for language, marker in (("curl", "curl -sS"), ("python", "from openai import OpenAI"),
                                 ("js", 'import OpenAI from "openai"')):
            await app.main.run_action(f"copy_snippet_{language}")
            await settle(pilot)
            snippet = app.clipboard
            assert marker in snippet and f"{tiny_server.base_url}/v1" in snippet
            assert "demo-adapter" in snippet  # the endpoint's default model, asked for
            assert "AITK_API_KEY" in snippet and tiny_server.api_key not in snippet
        assert not any(tiny_server.api_key in m for m in _messages(app))


async def test_copy_commands_wait_for_a_provisioned_app(make_app):
    app, _ = make_app()  # no inference.config.json yet
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        for command in ("copy_api_key", "copy_snippet_python", "open_in_browser"):
            assert "provision first" in app.state.why_not(command)
            await app.main.run_action(command)
            await settle(pilot)
            assert f"Not yet: {app.state.why_not(command)}." in _messages(app)[-1]
        assert COMMANDS_BY_ID["compare_models"].title == "Compare models"


@pytest.mark.parametrize("display", [None, ":0"])
async def test_open_endpoint_in_browser_or_show_its_url(make_app, ui_project, monkeypatch, display):
    write_config(ui_project)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, new=0: opened.append(url) or True)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION"):
        monkeypatch.delenv(var, raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", display)
    app, _ = make_app()
    url = "https://aiacaappdemo1.westus3.azurecontainerapps.io/"
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.main.ensure_pane("activity")
        await app.main.run_action("open_in_browser")
        await settle(pilot)
        if display:
            assert opened == [url] and f"Opened {url}" in _messages(app)[-1]
        else:  # over ssh: nothing opened; the URL is where the user can copy it
            assert opened == []
            assert url in _messages(app)[-1] and "No browser here" in _messages(app)[-1]
            assert f"Chat page: {url}" in app.main.activity.save_text()
