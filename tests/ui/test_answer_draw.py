"""Tables and code blocks in a streamed answer are drawn straight to lines, exactly.

Making a table's widgets (one per cell) or a code block's, and drawing them off screen,
is what let table-heavy answers fall seconds behind a fast stream. A finished table of
one-line cells and a code block whose lines fit are drawn with no widgets; anything else
(cells that wrap, a line that scrolls sideways) still goes through its widgets. Either
way the finished answer must match ``Markdown(text)`` cell for cell.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from textual.widgets._markdown import (
    MarkdownBlock,
    MarkdownFence,
    MarkdownTable,
)

from aitk_tui.ui.widgets import answer as answer_module
from aitk_tui.ui.widgets.answer import PacedStream, StreamedAnswer
from aitk_tui.ui.widgets.answer_lines import FrozenRun

from .stub_openai import demo_tokens
from .test_markdown_stream import (
    SIZE,
    Host,
    _assert_same,
    _at_once,
    _settle,
    _shown_whole,
)

TABLE = ("| name | rank | size |\n| :--- | ---: | :---: |\n"
         + "| q_proj | 16 | 8 MB |\n| **v_proj** | `32` | [16 MB](https://x.example) |\n" * 2)
CODE = "```python\nmodel = PeftModel.from_pretrained(base, path)\n\nprint(model)\n```\n"
WIDE_TABLE = ("| a | b |\n| - | - |\n| " + "word " * 30 + "| x |\n")  # its first cell must wrap
WIDE_CODE = "```\n" + "x = 1  # " + "y" * 200 + "\n```\n"  # scrolls sideways in its widget
EMPTY_TABLE = "| only | header |\n| --- | --- |\n"


def _answer(*blocks: str, repeat: int = 4) -> str:
    parts = []
    for i in range(repeat):
        for block in blocks:
            parts += [f"Step {i}: compare the **sizes**.\n\n", block, "\n"]
    return "".join(parts) + "Done.\n"


async def _streamed(text: str, pieces: int = 7, theme: str | None = None, width: int = SIZE[0]) -> tuple[list, list]:
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=(width, SIZE[1])) as pilot:
        if theme:
            app.theme = theme
            await _settle(pilot)
        stream = PacedStream(app.answer, interval=0.01)
        step = max(1, len(text) // pieces)
        for i in range(0, len(text), step):
            await stream.write(text[i:i + step])
            await pilot.pause(0.02)
        await stream.stop()
        await _settle(pilot)
        assert app.answer.source == text
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
        streamed = await _shown_whole(app, pilot, width)
    return streamed, await _at_once(text, width, theme)


@pytest.mark.parametrize("theme", [None, "textual-light", "ansi-dark"])
async def test_tables_and_code_are_drawn_exactly_as_markdown_draws_them(theme):
    streamed, at_once = await _streamed(_answer(TABLE, CODE, EMPTY_TABLE), theme=theme)
    _assert_same(streamed, at_once)


async def test_tables_that_wrap_and_code_that_scrolls_are_drawn_by_their_widgets_exactly():
    streamed, at_once = await _streamed(_answer(WIDE_TABLE, WIDE_CODE, TABLE, repeat=2), width=60)
    _assert_same(streamed, at_once)


async def test_finished_tables_and_code_blocks_never_become_widgets(monkeypatch):
    """Only the block still being written (and the hidden style samples) is ever mounted."""
    composed: list[type] = []
    for cls in (MarkdownTable, MarkdownFence):
        original = cls.compose

        def compose(self, original=original):
            composed.append(type(self))
            return original(self)

        monkeypatch.setattr(cls, "compose", compose)
    text = _answer(TABLE, CODE, repeat=6)
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await app.answer.append("Intro.\n\n")
        await _settle(pilot)  # laid out: the style samples are ready
        composed.clear()
        await app.answer.append(text)  # twelve finished blocks and a last paragraph at once
        app.answer.finish()
        await _settle(pilot)
        assert app.answer.source == "Intro.\n\n" + text
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
    assert composed == []


LISTS_AND_CODE = (
    "8. eight, with a [link](https://x.example) and `code`\n9. nine\n10. ten: the numbers widen\n11. eleven\n\n"
    "- a bullet with **bold** text that is long enough to wrap onto a second line at this width\n- b\n\n"
    "1. one\n2. two\n\n"
    "```\nno_language = True\n```\n\n"
    "    an indented code block\n    of two lines\n\n"
    "A closing paragraph.\n"
)


async def test_lists_and_code_drawn_from_their_tokens_match_markdown_exactly():
    """Finished blocks are drawn from markdown-it tokens, never made into widgets: ordered lists
    that start anywhere and widen, bullets that wrap, code with no language or indented."""
    streamed, at_once = await _streamed(_answer(LISTS_AND_CODE, repeat=2), pieces=9, width=60)
    _assert_same(streamed, at_once)


async def test_paragraphs_and_lists_are_never_made_into_widgets(monkeypatch):
    """Making a paragraph's widget (four per list item) for each block of each append was most
    of an append's time: the blocks the drawer draws are drawn from their tokens, the one
    still being written included."""
    made: list[type] = []
    original = MarkdownBlock.__init__

    def init(self, *args, **kwargs):
        made.append(type(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(MarkdownBlock, "__init__", init)
    text = "".join(demo_tokens(130, "lists")) + "\n\nThe last paragraph.\n"
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await app.answer.append("Intro.\n\n")
        await _settle(pilot)  # laid out: the style samples are ready
        made.clear()
        await app.answer.append(text)  # twenty finished blocks and a last paragraph at once
        app.answer.finish()
        await _settle(pilot)
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
    assert made == []  # even the block being written is drawn as lines (TailRun), not made


async def test_drawing_stops_at_its_budget_and_goes_on_at_the_next_frame(monkeypatch):
    """A long text at once (a redraw for a new width, a burst after a stall) is drawn a frame's
    budget at a time, never in one long hold of the event loop, and ends up exactly right."""
    monkeypatch.setattr(answer_module, "DRAW_BUDGET_S", 0.0)  # one block per frame
    text = _answer(LISTS_AND_CODE, TABLE, repeat=2)
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=SIZE) as pilot:
        await app.answer.append("Intro.\n\n")
        await _settle(pilot)
        await app.answer.append(text)
        run = app.answer.query_one(FrozenRun)
        first = len(run.strips)
        assert app.answer._queue and app.answer.applied_chars < len(app.answer.source)
        app.answer.finish()
        for _ in range(100):
            await pilot.pause(0.02)
            if not app.answer._queue and app.answer.applied_chars == len(app.answer.source):
                break
        await _settle(pilot)
        assert len(run.strips) > first
        assert [type(w) for w in app.answer.children if w.display] == [FrozenRun]
        streamed = await _shown_whole(app, pilot)
    _assert_same(streamed, await _at_once("Intro.\n\n" + text))


@pytest.mark.parametrize("seed", [9, 19])
async def test_wrapping_tables_and_wide_code_split_anywhere_are_drawn_exactly(seed):
    """Blocks its widgets draw, updated as they grow: Textual updates a table in place from
    the rows it had when composed (an update before that lost its rows) and a code block's
    label without its new width (frozen cut short). Split as these seeds split it, both
    went wrong."""
    text = _answer(WIDE_TABLE, WIDE_CODE, TABLE, repeat=2)
    rng = random.Random(seed)
    app = Host(StreamedAnswer(classes="answer"))
    async with app.run_test(size=(60, SIZE[1])) as pilot:
        stream = PacedStream(app.answer, interval=0.01)
        i = 0
        while i < len(text):
            n = rng.randint(1, 120)
            await stream.write(text[i:i + n])
            i += n
            await asyncio.sleep(rng.choice((0, 0, 0.001, 0.005, 0.02)))
        await stream.stop()
        await _settle(pilot)
        streamed = await _shown_whole(app, pilot, 60)
    _assert_same(streamed, await _at_once(text, 60))
