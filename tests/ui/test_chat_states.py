"""The chat's send / stop / answer-ended cycle: every way an answer ends gives the prompt back.

Esc is driven at exact moments with a scripted client (no timing luck): while the worker
closes its connection after the last token, and before the worker has run at all.
"""

from __future__ import annotations

import asyncio

from textual.widgets import Markdown

from aitk_tui.chat.client import ChatError, Delta, Finished, Usage
from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import settle
from .stub_openai import StubOpenAI


class ScriptedClient:
    """Streams ``tokens`` then Finished; ``aclose`` can be held open to catch the worker in cleanup."""

    def __init__(self, tokens: list[str], *, hold_close: bool = False, fail: Exception | None = None,
                 hold_mid: bool = False) -> None:
        self.tokens = tokens
        self.fail = fail
        self.mid = asyncio.Event()  # set after the first token when ``hold_mid``; ``resume`` goes on
        self.resume = asyncio.Event()
        if not hold_mid:
            self.resume.set()
        self.closing = asyncio.Event()
        self.release = asyncio.Event()
        if not hold_close:
            self.release.set()
        self.requests: list[list[dict]] = []

    async def stream_chat(self, messages, **kwargs):
        self.requests.append([dict(m) for m in messages])
        for i, token in enumerate(self.tokens):
            yield Delta(token)
            if i == 0:
                self.mid.set()
                await self.resume.wait()
        if self.fail is not None:
            raise self.fail
        yield Finished("stop", Usage(5, len(self.tokens), 5 + len(self.tokens)), 0.01, 100.0, "scripted")

    async def aclose(self) -> None:
        self.closing.set()
        await self.release.wait()


class Clients:
    """A client factory handing out the scripted clients in order."""

    def __init__(self, *clients: ScriptedClient) -> None:
        self.queue = list(clients)
        self.made: list[ScriptedClient] = []

    def __call__(self, url, key, verify=True):
        client = self.queue.pop(0) if self.queue else ScriptedClient(["again"])
        self.made.append(client)
        return client


async def _open(app, pilot) -> PromptArea:
    await settle(pilot)
    chat = await app.main.ensure_pane("chat")
    app.main.show_tab("chat")
    chat.set_endpoint("http://127.0.0.1:9", "k")
    prompt = chat.query_one(PromptArea)
    prompt.focus()
    await settle(pilot)
    return prompt


async def _wait_for(pilot, condition, tries: int = 400) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.005)
    raise AssertionError("condition never came true")


def _texts(app, selector: str) -> list[str]:
    return [str(w.render()) for w in app.main.chat.query(selector)]


async def test_esc_while_the_answer_is_closing_still_gives_the_prompt_back(make_app):
    first = ScriptedClient(["Hello", " world"], hold_close=True)
    clients = Clients(first)
    app, _ = make_app(chat_client_factory=clients)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"hi", "enter")
        # The whole answer has arrived; the worker is closing the connection right now.
        await _wait_for(pilot, first.closing.is_set)
        assert app.main.chat.streaming and prompt.busy
        await pilot.press("escape")
        # A short explicit wait: if Esc did not stop the answer, settle() would wait on the held
        # connection until the suite's timeout instead of failing here.
        await _wait_for(pilot, lambda: not app.main.chat.streaming, 1000)
        await settle(pilot)
        assert not app.main.chat.streaming and not prompt.read_only
        assert app.focused is prompt
        # The answer had ended: it is kept whole, as done, not as stopped.
        assert [(t.role, t.content) for t in app.main.chat.turns] == [("user", "hi"), ("assistant", "Hello world")]
        assert _texts(app, ".answer-stats")[-1].startswith("✓")
        assert app.main.chat.query(".answer").first(Markdown).source == "Hello world"
        # ...and the next message goes out as usual.
        await pilot.press(*"next", "enter")
        await settle(pilot)
        assert app.main.chat.turns[-1].content == "again" and not prompt.read_only
        assert clients.made[1].requests[0][-1] == {"role": "user", "content": "next"}
        first.release.set()


async def test_esc_before_the_worker_has_run_gives_the_prompt_back(make_app):
    clients = Clients(ScriptedClient(["later"]))
    app, _ = make_app(chat_client_factory=clients)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        prompt.text = "hi"
        await app.main.chat.send("hi")
        app.main.chat.stop()  # same tick: the worker's task is cancelled before its first line
        await settle(pilot)
        await _wait_for(pilot, lambda: not app.main.chat.streaming)
        assert not prompt.read_only
        assert "stopped" in _texts(app, ".answer-stats")[-1]
        assert clients.made == []  # the cancelled worker never got as far as connecting
        await pilot.press(*"ok", "enter")
        await settle(pilot)
        assert app.main.chat.turns[-1].content == "later"


async def test_an_unexpected_client_error_fails_the_turn_and_gives_the_prompt_back(make_app):
    app, _ = make_app(chat_client_factory=Clients(ScriptedClient(["half"], fail=RuntimeError("boom"))))
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        assert not app.main.chat.streaming and not prompt.read_only
        assert "failed unexpectedly" in _texts(app, ".chat-error")[-1]
        assert app.main.chat.turns == []


async def test_a_failed_prompt_comes_back_selected_so_the_next_one_replaces_it(make_app):
    clients = Clients(ScriptedClient([], fail=ChatError("the endpoint is busy, retry shortly", None, 429)))
    app, _ = make_app(chat_client_factory=clients)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"first", "enter")
        await settle(pilot)
        assert prompt.text == "first" and not prompt.read_only  # given back: Enter sends it again
        await pilot.press(*"second")
        assert prompt.text == "second"  # typing replaces it, never appends to it
        await pilot.press("enter")
        await settle(pilot)
        assert clients.made[1].requests[0][-1] == {"role": "user", "content": "second"}
        assert [t.content for t in app.main.chat.turns] == ["second", "again"]


async def test_new_conversation_from_the_key_and_the_palette_forgets_the_turns(make_app):
    app, _ = make_app(chat_client_factory=Clients())
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"one", "enter")
        await settle(pilot)
        assert len(app.main.chat.turns) == 2
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.main.chat.turns == [] and not app.main.chat.query(".user-msg") and app.main.chat.last_answer == ""
        assert "New conversation" in _texts(app, "#chat-empty")[0]
        await pilot.press(*"two", "enter")
        await settle(pilot)
        sent = app.chat_client_factory.made[-1].requests[0]
        assert sent == [{"role": "user", "content": "two"}]
        assert app.focused is prompt
        # The palette runs the same command.
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press(*"New conversation")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert app.main.chat.turns == []


async def test_new_conversation_while_an_answer_streams_stops_it_first(make_app):
    held = ScriptedClient(["partial"], hold_close=True)
    app, _ = make_app(chat_client_factory=Clients(held))
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"hi", "enter")
        await _wait_for(pilot, held.closing.is_set)
        await pilot.press("ctrl+n")
        await settle(pilot)
        await _wait_for(pilot, lambda: not app.main.chat.streaming)
        await settle(pilot)
        assert app.main.chat.turns == [] and not prompt.read_only
        held.release.set()


def _conversation(app) -> list[str]:
    return [m["content"] for m in app.main.chat.messages("")][:-1]


async def test_a_long_chat_stays_inside_the_context_from_v1_models_with_a_notice(make_app):
    stub = StubOpenAI(tokens=["A fairly long answer ", "that takes room ", "in the context window."]).start()
    stub.max_model_len = stub.context_limit = 200
    try:
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            prompt = await _open(app, pilot)
            app.main.chat.set_endpoint(stub.url, stub.api_key)
            for i in range(12):
                prompt.text = f"question number {i} with some words to take room"
                await pilot.press("enter")
                await settle(pilot)
                assert not app.main.chat.query(".chat-error"), _texts(app, ".chat-error")
            assert len(app.main.chat.turns) == 24  # every exchange is kept on screen and for saving
            assert all(stub.count_tokens(r["messages"]) < 200 for r in stub.requests)
            assert stub.requests[-1]["messages"][0]["content"] != "question number 0 with some words to take room"
            notices = _texts(app, ".chat-notice")
            assert notices and "left out to fit the model's 200-token context" in notices[-1]
    finally:
        stub.stop()


async def test_the_limit_is_learnt_from_the_400_when_v1_models_does_not_say(make_app):
    stub = StubOpenAI(tokens=["An answer of some length, ", "long enough to fill things up."]).start()
    stub.context_limit = 150
    stub.chars_per_token = 1.5  # more tokens than the client guesses: its estimate falls short
    try:
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            prompt = await _open(app, pilot)
            app.main.chat.set_endpoint(stub.url, stub.api_key)
            for i in range(6):
                prompt.text = f"message {i}"
                await pilot.press("enter")
                await settle(pilot)
                assert not app.main.chat.query(".chat-error"), _texts(app, ".chat-error")
                assert prompt.text == ""
            assert len(app.main.chat.turns) == 12
            assert "150-token context" in _texts(app, ".chat-notice")[-1]
    finally:
        stub.stop()


async def test_a_message_longer_than_the_whole_context_fails_clearly_and_is_not_retried_forever(make_app):
    stub = StubOpenAI().start()
    stub.max_model_len = stub.context_limit = 50
    try:
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            prompt = await _open(app, pilot)
            app.main.chat.set_endpoint(stub.url, stub.api_key)
            prompt.text = "x" * 400
            await pilot.press("enter")
            await settle(pilot)
            assert "maximum context length is 50 tokens" in _texts(app, ".chat-error-detail")[-1]
            assert len(stub.requests) == 1 and prompt.text == "x" * 400 and not prompt.read_only
    finally:
        stub.stop()


async def test_the_next_message_can_be_typed_while_an_answer_streams_and_enter_waits_for_it(make_app):
    first = ScriptedClient(["Hello", " world"], hold_mid=True)
    clients = Clients(first)
    app, _ = make_app(chat_client_factory=clients)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"hi", "enter")
        await _wait_for(pilot, first.mid.is_set)
        await pilot.press(*"next one", "ctrl+j", *"two")
        await pilot.pause()
        assert app.main.chat.streaming and prompt.text == "next one\ntwo"  # typed ahead, not dropped
        await pilot.press("enter", "enter")
        await pilot.pause(0.05)
        assert app.main.chat.streaming and prompt.text == "next one\ntwo" and len(clients.made) == 1  # Enter waits
        held = [n.message for n in app._notifications if "still streaming" in n.message]
        assert len(held) == 1 and "Enter sends it once the answer ends" in held[0]  # said once, not per Enter
        first.resume.set()
        await settle(pilot)
        assert not app.main.chat.streaming and app.focused is prompt
        assert [t.content for t in app.main.chat.turns] == ["hi", "Hello world"] and prompt.text == "next one\ntwo"
        await pilot.press("enter")
        await settle(pilot)
        assert clients.made[1].requests[0][-1] == {"role": "user", "content": "next one\ntwo"}
        assert prompt.text == ""


async def test_a_failed_answer_keeps_what_was_typed_since_and_shows_the_failed_message(make_app):
    first = ScriptedClient(["half"], hold_mid=True, fail=ChatError("the endpoint is busy, retry shortly", None, 429))
    clients = Clients(first)
    app, _ = make_app(chat_client_factory=clients)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"first", "enter")
        await _wait_for(pilot, first.mid.is_set)
        await pilot.press(*"second")
        first.resume.set()
        await settle(pilot)
        assert not app.main.chat.streaming and app.main.chat.turns == []
        assert prompt.text == "second"  # never replaced by, nor glued to, the failed one
        assert _texts(app, ".user-msg") == ["first"]  # the failed message stays in sight
        assert "busy" in _texts(app, ".chat-error")[-1]
        assert "typed since is kept" in str(app.main.chat.query_one("#chat-status").render())
        await pilot.press("enter")
        await settle(pilot)
        assert clients.made[1].requests[0][-1] == {"role": "user", "content": "second"}
