"""The Chat tab against a stub OpenAI-protocol server streaming SSE on 127.0.0.1."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Input, Markdown, Static

from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import settle
from .fakes import write_config
from .stub_openai import StubOpenAI


@pytest.fixture
def stub():
    server = StubOpenAI().start()
    yield server
    server.stop()


async def _open_chat(app, pilot, url: str, key: str) -> PromptArea:
    await settle(pilot)
    chat = await app.main.ensure_pane("chat")
    app.main.show_tab("chat")
    chat.set_endpoint(url, key)
    prompt = app.main.chat.query_one(PromptArea)
    prompt.focus()
    await settle(pilot)
    return prompt


def _texts(app, selector: str) -> list[str]:
    return [str(w.render()) for w in app.main.chat.query(selector)]


async def test_answer_streams_as_markdown_with_ttft_and_tokens_per_second(make_app, stub, ui_project):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open_chat(app, pilot, stub.url, stub.api_key)
        await pilot.press(*"hi", "ctrl+j", *"yo")
        assert prompt.text == "hi\nyo"  # ctrl+j is a new line, not send
        await pilot.press("enter")
        await settle(pilot)
        answer = app.main.chat.query_one(".answer", Markdown)
        assert answer.source == "Hello, **world**!\n\n- one\n- two"
        stats = _texts(app, ".answer-stats")[-1]
        assert "first token" in stats and "tok/s" in stats and "7 tokens" in stats
        assert not prompt.read_only and prompt.text == ""
        assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "hi\nyo"}
        assert stub.requests[-1]["temperature"] == 0.7 and stub.requests[-1]["max_tokens"] == 512
        # The conversation is kept: the second question carries the first exchange.
        app.main.chat.query_one("#chat-system", Input).value = "Be brief."
        prompt.text = "again"
        await pilot.press("enter")
        await settle(pilot)
        sent = stub.requests[-1]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        await app.main.run_action("save_chat")
        await settle(pilot)
    saved = list((ui_project.state_dir / "chats").glob("chat-*.md"))
    assert len(saved) == 1 and "Hello, **world**!" in saved[0].read_text()


async def test_model_text_is_sanitized_before_rendering(make_app, stub):
    stub.tokens = ["safe", "\x1b]52;c;ZXZpbA==\x07", " text\x07", "\x1b[2J!"]
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_chat(app, pilot, stub.url, stub.api_key)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        assert app.main.chat.query_one(".answer", Markdown).source == "safe text!"


async def test_esc_stops_generation_and_unlocks_the_prompt(make_app, stub):
    stub.hold = threading.Event()
    stub.tokens = ["partial", " answer", " never", " sent"]
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open_chat(app, pilot, stub.url, stub.api_key)
        await pilot.press(*"go", "enter")
        for _ in range(200):
            await pilot.pause(0.01)
            if app.main.chat.tokens_streamed:
                break
        assert app.main.chat.streaming and prompt.busy
        await pilot.press("escape")
        await settle(pilot)
        stub.hold.set()
        assert not app.main.chat.streaming and not prompt.read_only
        assert "stopped" in _texts(app, ".answer-stats")[-1]
        assert app.main.chat.turns[-1].content == "partial"


async def test_401_429_and_a_sleeping_endpoint_are_explained_inline_and_the_prompt_is_given_back(make_app, stub):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open_chat(app, pilot, stub.url, "wrong-key")
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        errors = _texts(app, ".chat-error")
        assert errors and "refused the API key (HTTP 401)" in errors[-1]
        assert prompt.text == "hi" and not prompt.read_only  # restored, ready to send again
        assert app.main.chat.turns == [] and not app.main.chat.query(".user-msg")

        app.main.chat.set_endpoint(stub.url, stub.api_key)
        stub.fail_status, stub.retry_after = 429, 7
        await pilot.press("enter")
        await settle(pilot)
        error = _texts(app, ".chat-error")[-1]
        assert "busy (HTTP 429" in error and "7 s" in error and prompt.text == "hi"

        app.main.chat.set_endpoint("http://127.0.0.1:9", "k")  # nothing listens on port 9
        await pilot.press("enter")
        await settle(pilot)
        assert "not answering yet" in _texts(app, ".chat-error")[-1]
        assert app.main.chat.turns == []


async def test_go_to_inference_endpoint_fills_url_and_key_from_the_app(make_app, ui_project):
    write_config(ui_project, endpoint="myapp.westus3.azurecontainerapps.io")
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        assert app.main.chat.query_one("#chat-url", Input).value == "https://myapp.westus3.azurecontainerapps.io"
        assert app.main.chat.query_one("#chat-key", Input).value == session.api_key_value
        assert isinstance(app.focused, PromptArea)
        await app.main.run_action("copy_endpoint")
        assert not any(session.api_key_value in str(n.message) for n in app._notifications)


async def test_no_endpoint_yet_is_explained(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        chat = await app.main.ensure_pane("chat")
        app.main.show_tab("chat")
        chat.query_one(PromptArea).focus()
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        assert "No endpoint yet" in str(app.main.chat.query_one(".chat-error", Static).render())
