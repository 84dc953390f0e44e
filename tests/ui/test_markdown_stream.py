"""A streamed answer ends up drawn exactly as ``Markdown(text)`` draws it at once.

The answer streams through ``PacedStream`` into a ``StreamedAnswer`` in pieces of uneven
size (so block boundaries fall everywhere) in a small terminal, where most blocks are
frozen out of view; then the terminal is made tall enough to show all of it, and every
line on the screen, text and style, is compared with a plain Textual ``Markdown`` given
the whole text at once, in a terminal of that size.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from aitk_tui.ui.widgets.answer import PacedStream, StreamedAnswer
from aitk_tui.ui.widgets.answer_lines import FrozenRun

from .stub_openai import demo_tokens

SIZE = (80, 24)
TALL = 260  # lines: every answer here fits on one screen


class Host(App):
    """The answer in an anchored scroll, as the chat pane holds it."""

    # A steady gutter: a taller terminal that needs no scrollbar keeps the answer's width.
    CSS = "#conversation { padding: 0 1; scrollbar-gutter: stable; } .answer { padding: 0 1; }"

    def __init__(self, answer: Markdown) -> None:
        super().__init__()
        self.answer = answer

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="conversation"):
            yield self.answer

    def on_mount(self) -> None:
        self.query_one("#conversation", VerticalScroll).anchor()


def _screen(app: App) -> list[list[tuple[str, str]]]:
    """What the terminal shows, cell by cell: the character and its style (colours,
    attributes, link) as the terminal gets it; how Textual cut the line into segments and
    its cached hashes are not part of the picture."""
    return [[(char, str(seg.style)) for seg in strip for char in seg.text]
            for strip in app.screen._compositor.render_strips()]


async def _settle(pilot) -> None:
    """A few frames, then on until the screen stops changing: on a busy machine a Markdown
    given its whole text at once can take longer than that to draw it."""
    for _ in range(4):
        await pilot.pause(0.05)
    before = _screen(pilot.app)
    for _ in range(40):
        await pilot.pause(0.05)
        now = _screen(pilot.app)
        if now == before:
            return
        before = now


async def _at_once(text: str, width: int = SIZE[0], theme: str | None = None) -> list:
    app = Host(Markdown(text, classes="answer"))
    async with app.run_test(size=(width, TALL)) as pilot:
        if theme:
            app.theme = theme
        await _settle(pilot)
        assert app.answer.size.height < TALL - 2
        return _screen(app)


async def _shown_whole(app: App, pilot, width: int = SIZE[0]) -> list:
    await pilot.resize_terminal(width, TALL)
    await _settle(pilot)
    return _screen(app)


def _assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for y, (a, b) in enumerate(zip(got, want)):
        assert a == b, f"line {y}: {''.join(c for c, _ in a)!r} != {''.join(c for c, _ in b)!r}"


async def _stream(pieces: list[str], seed: int, answer: StreamedAnswer, pilot) -> None:
    rng = random.Random(seed)
    stream = PacedStream(answer, interval=0.01)
    try:
        i = 0
        while i < len(pieces):
            n = rng.randint(1, 25)
            for piece in pieces[i:i + n]:
                await stream.write(piece)
            i += n
            await asyncio.sleep(rng.choice((0, 0.002, 0.02)))
    finally:
        await stream.stop()
    await _settle(pilot)


@pytest.mark.parametrize(("shape", "tokens"), [("prose", 700), ("lists", 240), ("code", 240), ("tables", 240)])
async def test_a_streamed_answer_is_drawn_exactly_as_markdown_at_once(shape, tokens):
    pieces = demo_tokens(tokens, shape)
    text = "".join(pieces)
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await _stream(pieces, seed=len(shape), answer=app.answer, pilot=pilot)
        assert app.answer.source == text
        # Finished blocks are drawn once: the answer shows one widget, however long.
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
        assert app.answer.size.height > 2 * SIZE[1]  # most of it was frozen out of view
        streamed = await _shown_whole(app, pilot)
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]  # same width: no redraw
    _assert_same(streamed, await _at_once(text))


async def test_stop_right_after_a_write_draws_the_whole_tail():
    """stop() while an append is in flight: the rest is appended after it, never beside it."""
    head = "Intro:\n\n```python\n" + "x = 1\n" * 30
    tail = "y = 2\n```\n\nAfter the code.\n"
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        stream = PacedStream(app.answer, interval=0.01)
        await stream.write(head)
        await asyncio.sleep(0)  # the first append is under way
        await stream.write(tail)
        await stream.stop()
        await _settle(pilot)
        assert app.answer.source == head + tail
        streamed = await _shown_whole(app, pilot)
    _assert_same(streamed, await _at_once(head + tail))


async def test_a_new_width_redraws_the_answer_for_that_width():
    pieces = demo_tokens(160, "lists")
    text = "".join(pieces)
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        half = len(pieces) // 2
        stream = PacedStream(app.answer, interval=0.01)
        for piece in pieces[:half]:
            await stream.write(piece)
        await _settle(pilot)
        await pilot.resize_terminal(60, 20)  # while streaming
        await _settle(pilot)
        for piece in pieces[half:]:
            await stream.write(piece)
        await stream.stop()
        await _settle(pilot)
        _assert_same(await _shown_whole(app, pilot, 60), await _at_once(text, 60))
        await pilot.resize_terminal(100, 30)  # once finished
        await _settle(pilot)
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
        _assert_same(await _shown_whole(app, pilot, 100), await _at_once(text, 100))


async def test_a_new_theme_redraws_the_answer_in_its_colours():
    text = "".join(demo_tokens(120, "code"))
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        stream = PacedStream(app.answer, interval=0.01)
        await stream.write(text)
        await stream.stop()
        await _settle(pilot)
        app.theme = "textual-light"
        await _settle(pilot)
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
        streamed = await _shown_whole(app, pilot)
    _assert_same(streamed, await _at_once(text, theme="textual-light"))
