"""The single chat picks its model from the endpoint's /v1/models (palette: Choose the chat's
model); the next messages name it, and "the endpoint's default" names the default again."""

from __future__ import annotations

from textual.widgets import OptionList

from .conftest import settle
from .stub_openai import StubOpenAI


async def _picker(pilot, app):
    for _ in range(150):
        await pilot.pause(0.02)
        if app.screen.id == "model-picker" and app.screen.loaded:
            return app.screen
    raise AssertionError("the model picker never loaded")


async def _send(pilot, app, text: str) -> None:
    app.main.chat.query_one("#prompt").text = text
    app.main.chat.query_one("#prompt").focus()
    await pilot.press("enter")
    await settle(pilot)
    assert not app.main.chat.query(".chat-error")


async def test_the_chosen_model_is_the_one_asked(make_app):
    stub = StubOpenAI(tokens=["fine"]).start()
    stub.models = ["base", "adapter-a", "adapter-b"]
    try:
        app, _ = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            chat = await app.main.ensure_pane("chat")
            app.main.show_tab("chat")
            chat.set_endpoint(stub.url, stub.api_key)
            await settle(pilot)
            await _send(pilot, app, "hello")
            assert stub.requests[-1]["model"] == "base"  # no choice: the endpoint's first

            await app.main.run_action("choose_model")
            picker = await _picker(pilot, app)
            options = picker.query_one(OptionList)
            listed = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
            assert listed[:3] == stub.models and "default" in listed[3]
            await pilot.press(*"adapter-b", "enter")
            await settle(pilot)
            assert chat.model == "adapter-b"
            assert "model adapter-b" in str(chat.query_one("#chat-settings").title)
            await _send(pilot, app, "and now?")
            assert stub.requests[-1]["model"] == "adapter-b"

            await app.main.run_action("choose_model")
            await _picker(pilot, app)
            await pilot.press(*"default", "enter")
            await settle(pilot)
            assert chat.model is None
            await _send(pilot, app, "back")
            assert stub.requests[-1]["model"] == "base"
    finally:
        stub.stop()


async def test_a_model_the_endpoint_stopped_serving_fails_the_turn_with_what_it_serves(make_app):
    stub = StubOpenAI(tokens=["fine"]).start()
    stub.models = ["base", "adapter-a"]
    try:
        app, _ = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            chat = await app.main.ensure_pane("chat")
            app.main.show_tab("chat")
            chat.set_endpoint(stub.url, stub.api_key)
            await settle(pilot)
            chat.set_model("gone")
            chat.query_one("#prompt").text = "hello?"
            chat.query_one("#prompt").focus()
            await pilot.press("enter")
            await settle(pilot)
            errors = " ".join(str(w.render()) for w in chat.query(".chat-error, .chat-error-detail"))
            assert "no longer serves the model 'gone'" in errors and "base, adapter-a" in errors
            assert not stub.requests
    finally:
        stub.stop()


async def test_no_endpoint_says_so_in_the_picker(make_app):
    app, _ = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.main.run_action("choose_model")
        for _ in range(100):
            await pilot.pause(0.02)
            if app.screen.id == "model-picker" and app.screen.loaded:
                break
        assert "No endpoint yet" in str(app.screen.query_one("#picker-error").render())
