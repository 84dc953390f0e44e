"""Tables and code blocks in a streamed answer are drawn straight to lines, exactly.

Making a table's widgets (one per cell) or a code block's, and drawing them off screen,
is what let table-heavy answers fall seconds behind a fast stream. A finished table of
one-line cells and a code block whose lines fit are drawn with no widgets; anything else
(cells that wrap, a line that scrolls sideways) still goes through its widgets. Either
way the finished answer must match ``Markdown(text)`` cell for cell.
"""

from __future__ import annotations

import pytest
from textual.widgets._markdown import MarkdownFence, MarkdownTable

from aitk_tui.ui.widgets.answer import FrozenRun, PacedStream, StreamedAnswer

from .test_markdown_stream import SIZE, Host, _assert_same, _at_once, _settle, _shown_whole

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
