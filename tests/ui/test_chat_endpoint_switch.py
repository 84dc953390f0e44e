"""F9 (Go to inference endpoint) points the chat at the app's endpoint; a URL the user typed
under Settings is not replaced in silence: the toast names both."""

from __future__ import annotations

from .conftest import settle
from .fakes import write_config

APP_URL = "https://aiacaappdemo1.westus3.azurecontainerapps.io"


async def test_f9_says_it_replaced_a_typed_url(make_app, ui_project):
    write_config(ui_project)
    app, _ = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        chat = await app.main.ensure_pane("chat")
        chat.query_one("#chat-url").value = "https://my-own-server.example.com"
        await pilot.press("f9")
        await settle(pilot)
        assert chat.endpoint_url() == APP_URL
        toasts = [n.message for n in app._notifications]
        assert any("https://my-own-server.example.com" in t and APP_URL in t for t in toasts), toasts


async def test_f9_on_the_apps_own_url_says_nothing(make_app, ui_project):
    write_config(ui_project)
    app, _ = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        assert app.main.chat.endpoint_url() == APP_URL
        assert not [n for n in app._notifications if n.title == "Endpoint"]
