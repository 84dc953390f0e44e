"""Compare mode (palette "Compare models") against the real server serving the base and two
adapters of the tiny model: both answers stream side by side (stacked at 80 columns), each
with its own statistics and its own conversation; Esc stops both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from textual.widgets import Input

from aitk_tui.chat.client import ChatClient
from aitk_tui.ui.widgets.compare import CompareScreen, CompareSide
from aitk_tui.ui.widgets.prompt import PromptArea
from inference_server.demo_model import DEMO_REPLIES
from tests.fixtures_model import TEST_KEY, RunningServer, TinyModel, make_settings, serve, wait_until

from .conftest import settle


@pytest.fixture(scope="module")
def three_models(tiny_model: TinyModel, second_adapter: Path) -> Iterator[RunningServer]:
    settings = make_settings(tiny_model, merge=None, adapters=[tiny_model.adapter_dir, second_adapter])
    with serve(settings) as running:
        yield running


async def _open_chat(app, pilot, server: RunningServer, temperature: str = "0") -> None:
    await settle(pilot)
    chat = await app.main.ensure_pane("chat")
    app.main.show_tab("chat")
    chat.set_endpoint(server.base_url, TEST_KEY)
    chat.query_one("#chat-temp", Input).value = temperature
    chat.query_one("#chat-max", Input).value = "40"  # short answers keep the test quick
    await settle(pilot)


async def _pick(pilot, screen_id: str, model: str) -> None:
    for _ in range(100):
        await pilot.pause(0.02)
        if pilot.app.screen.id == screen_id and pilot.app.screen.loaded:
            break
    assert pilot.app.screen.id == screen_id
    await pilot.press(*model, "enter")


async def _compare(app, pilot, a: str, b: str) -> CompareScreen:
    await app.main.run_action("compare_models")
    await _pick(pilot, "compare-picker-a", a)
    await _pick(pilot, "compare-picker-b", b)
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, CompareScreen) and screen.models == (a, b)
    return screen


async def _ask(pilot, screen: CompareScreen, text: str) -> None:
    screen.query_one(PromptArea).text = text
    await pilot.press("enter")
    await settle(pilot)


def _stats(side: CompareSide) -> str:
    return str(side.query(".answer-stats").last().render())


async def test_two_models_answer_side_by_side_and_keep_their_own_conversations(make_app, three_models):
    base_reply, adapter_reply = DEMO_REPLIES["hello"]
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_chat(app, pilot, three_models)
        screen = await _compare(app, pilot, "demo-adapter", "demo-model")
        a, b = screen.sides
        # At 80 columns one above the other; wider, side by side (and back again).
        assert a.region.x == b.region.x and a.region.bottom <= b.region.y
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert a.region.y == b.region.y and a.region.right <= b.region.x

        await _ask(pilot, screen, "hello")
        assert (a.last_answer, b.last_answer) == (adapter_reply, base_reply)
        for side in (a, b):
            assert "first token" in _stats(side) and "tok/s" in _stats(side)
        prompt = screen.query_one(PromptArea)
        assert not prompt.read_only and prompt.text == ""

        # The second turn: each side sends its own history (its own answer), not the other's.
        await _ask(pilot, screen, "tell me more")
        assert [t["content"] for t in a.turns] == ["hello", adapter_reply, "tell me more", a.last_answer]
        assert [t["content"] for t in b.turns] == ["hello", base_reply, "tell me more", b.last_answer]
        assert a.last_answer and b.last_answer

        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert a.region.x == b.region.x and a.region.bottom <= b.region.y
        assert a.last_answer in str(a.query(".answer").last().source)
        await pilot.press("f1")  # help for what has focus: compare mode's own
        await settle(pilot)
        assert "Esc** stops both answers" in app.screen.query_one("#help-text").source
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("escape")  # nothing streaming: Esc closes compare mode
        await settle(pilot)
        assert not isinstance(app.screen, CompareScreen)


class LongReplies(httpx.AsyncHTTPTransport):
    """Asks the server for 2000 tokens whatever the end-of-text, so there is time to stop."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            body = json.loads(request.content)
            body.update(max_tokens=2000, ignore_eos=True)
            content = json.dumps(body).encode()
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
            request = httpx.Request(request.method, request.url, headers=[*headers, (b"content-length",
                                                                                       str(len(content)).encode())],
                                    content=content, extensions=request.extensions)
        return await super().handle_async_request(request)


async def test_esc_stops_both_answers_and_the_server_stops_generating(make_app, three_models):
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_chat(app, pilot, three_models)

        def client() -> ChatClient:
            return ChatClient(three_models.base_url, TEST_KEY, transport=LongReplies(), allow_insecure_http=True)

        screen = CompareScreen(("second-adapter", "demo-model"), client, {"temperature": 0}, three_models.base_url)
        await app.push_screen(screen)
        await settle(pilot)
        generated = three_models.app.state.metrics.generated_tokens
        screen.query_one(PromptArea).text = "go on and on"
        await pilot.press("enter")
        for _ in range(500):
            await pilot.pause(0.02)
            if all(side.query(".answer").last().source for side in screen.sides):
                break
        assert screen.streaming and three_models.state.engine.active == 2
        await pilot.press("escape")
        await settle(pilot)
        assert not screen.streaming and isinstance(app.screen, CompareScreen)  # stopped, still open
        for side in screen.sides:
            assert _stats(side).startswith("■ stopped")
            assert side.turns[-1] == {"role": "assistant", "content": side.last_answer} and side.last_answer
        assert wait_until(lambda: three_models.state.engine.active == 0, timeout=10)
        assert three_models.app.state.metrics.generated_tokens - generated < 4000
        assert not screen.query_one(PromptArea).read_only


async def test_an_unknown_model_fails_on_its_side_only(make_app, three_models):
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_chat(app, pilot, three_models)
        chat = app.main.chat

        screen = CompareScreen(("gone-adapter", "demo-model"), lambda: chat.make_client(three_models.base_url, TEST_KEY),
                               {"temperature": 0}, three_models.base_url)
        await app.push_screen(screen)
        await settle(pilot)
        await _ask(pilot, screen, "hello")
        a, b = screen.sides
        assert a.turns == [] and "gone-adapter" in str(a.query(".chat-error").last().render())
        assert b.last_answer == DEMO_REPLIES["hello"][0]


async def test_one_model_is_nothing_to_compare(make_app, tiny_model):
    app, _ = make_app()
    with serve(make_settings(tiny_model, merge=None)) as single:  # the merged adapter only
        async with app.run_test(size=(80, 24)) as pilot:
            await _open_chat(app, pilot, single)
            await app.main.run_action("compare_models")
            for _ in range(100):
                await pilot.pause(0.02)
                if app.screen.id == "compare-picker-a" and app.screen.loaded:
                    break
            error = str(app.screen.query_one("#picker-error").render())
            assert "only one model" in error and "--serve-base" in error
