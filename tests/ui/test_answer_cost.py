"""What kept a fast stream from freezing the chat (issue 10), held in place.

Measured under benchmarks/tui_bench.py, the event-loop stalls over 100 ms were full garbage
collections (every ~0.5 s), a redraw of the whole answer when the scrollbar appeared, the
first answer's Pygments lexer scan, and the chat client's CA bundle load per question.
"""

from __future__ import annotations

import gc

import textual.highlight
from textual.widgets import Markdown

from aitk_tui.chat.client import ChatClient
from aitk_tui.ui.widgets import answer_gc
from aitk_tui.ui.widgets.answer import PacedStream, StreamedAnswer
from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import settle
from .stub_openai import StubOpenAI, demo_tokens
from .test_markdown_stream import SIZE, Host, _settle

HELD = answer_gc._NEVER


async def test_full_collections_wait_while_an_answer_streams_and_run_once_after():
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        before = gc.get_threshold()
        full = gc.get_stats()[2]["collections"]
        stream = PacedStream(app.answer, interval=0.01)
        await stream.write("A first paragraph.\n\n- one\n- two\n\n")
        await pilot.pause(0.05)
        assert answer_gc.holders() == 1 and gc.get_threshold()[2] == HELD
        assert gc.get_threshold()[:2] == before[:2]  # young collections go on
        await stream.write("The end.\n")
        await stream.stop()
        await _settle(pilot)
        assert answer_gc.holders() == 0 and gc.get_threshold() == before
        assert gc.get_stats()[2]["collections"] > full  # the one deferred full collection ran


async def test_a_stream_that_goes_quiet_or_is_taken_off_gives_collections_back(monkeypatch):
    monkeypatch.setattr(StreamedAnswer, "GC_IDLE_S", 0.1)
    before = gc.get_threshold()
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await app.answer.append("Waiting for the model")  # never finished
        assert answer_gc.holders() == 1
        await pilot.pause(0.3)
        assert answer_gc.holders() == 0 and gc.get_threshold() == before
        await app.answer.append(" to go on.")  # the stream resumes: held again
        assert answer_gc.holders() == 1
        await app.answer.remove()  # a failed turn takes the answer off the screen
        assert answer_gc.holders() == 0 and gc.get_threshold() == before


async def test_two_streams_hold_collections_until_both_end():
    before = gc.get_threshold()
    first, second = answer_gc.hold(), answer_gc.hold()
    first.release()
    first.release()  # twice: still one release
    assert answer_gc.holders() == 1 and gc.get_threshold()[2] == HELD
    second.release()
    assert answer_gc.holders() == 0 and gc.get_threshold() == before


async def test_the_style_samples_never_make_highlighting_guess_a_language(monkeypatch):
    """Guessing first imports every Pygments lexer: a quarter second of the first answer."""
    guessed: list[str] = []
    real = textual.highlight.guess_language
    monkeypatch.setattr(textual.highlight, "guess_language", lambda code, path=None: guessed.append(code) or real(
        code, path))
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await app.answer.append("Some text.\n\n```python\nx = 1\n```\n\nMore.\n")
        app.answer.finish()
        await _settle(pilot)
        assert app.answer._rig_ready()
    assert guessed == []


async def test_chat_clients_share_one_ssl_context():
    """Loading the CA bundle per client took 60-400 ms of the event loop for every question."""
    contexts = []
    for _ in range(2):
        client = ChatClient("https://chat.example", "k")
        contexts.append(client._http._transport._pool._ssl_context)
        await client.aclose()
    assert contexts[0] is contexts[1]


async def test_an_answer_outgrowing_the_chat_is_never_redrawn_for_the_scrollbar(make_app, monkeypatch):
    """The scrollbar that appears as the answer outgrows the pane would narrow it, and a new
    width redraws every line so far: the chat keeps a steady gutter instead."""
    redraws: list[int] = []
    rebuild = StreamedAnswer._rebuild

    async def counted(self, markdown):
        if markdown is None:  # the same text again, for a new width or theme
            redraws.append(self.content_size.width)
        await rebuild(self, markdown)

    monkeypatch.setattr(StreamedAnswer, "_rebuild", counted)
    stub = StubOpenAI(tokens=demo_tokens(400, "lists"), tokens_per_s=2000, burst=20).start()
    try:
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            chat = await app.main.ensure_pane("chat")
            app.main.show_tab("chat")
            chat.set_endpoint(stub.url, stub.api_key)
            prompt = app.main.chat.query_one(PromptArea)
            prompt.focus()
            await settle(pilot)
            prompt.text = "a long answer please"
            await pilot.press("enter")
            for _ in range(200):
                await pilot.pause(0.05)
                if not chat.streaming:
                    break
            await settle(pilot, 0.2)
            answer = app.main.chat.query_one(".answer", Markdown)
            assert answer.source == "".join(demo_tokens(400, "lists"))
            assert answer.size.height > 3 * 24  # it outgrew the pane: the scrollbar is there
    finally:
        stub.stop()
    assert redraws == []
