"""The TUI's chat sends the app's API key only to the app's endpoint, and never over
plain http off this machine (issue 12, item 8)."""

from __future__ import annotations

from textual.widgets import Input

from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import settle


async def _send(app, pilot, url: str | None, key: str | None, text: str = "hello") -> list[str]:
    chat = app.main.chat
    if url is not None:
        chat.query_one("#chat-url", Input).value = url
    if key is not None:
        chat.query_one("#chat-key", Input).value = key
    chat.query_one(PromptArea).text = text
    await chat.send(text)
    await settle(pilot)
    return [str(w.render()) for w in chat.query(".chat-error")]


async def test_the_apps_key_is_not_sent_to_an_edited_url(make_app):
    made = []

    def factory(url, key, **kw):
        made.append((url, key))
        raise AssertionError("no client may be made for a refused destination")

    app, _ = make_app(chat_client_factory=factory)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.main.ensure_pane("chat")
        app.main.show_tab("chat")
        app.main.chat.set_endpoint("https://myapp.westus3.azurecontainerapps.io", "the-apps-key-0123456789")
        errors = await _send(app, pilot, "https://collector.example", None)
        assert errors and "The API key was not sent: the app's API key is sent only to its own endpoint" in errors[-1]
        errors = await _send(app, pilot, "http://203.0.113.9:8000", "my-own-key-0123456789")
        assert "is plain http: the API key is sent only over https" in errors[-1]
        assert made == []
        assert not app.main.chat.query_one(PromptArea).read_only  # the prompt stays the user's
