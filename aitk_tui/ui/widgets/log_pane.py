"""A log with real tail semantics (the toolong habit).

Following is a state the user changes, not a guess from the scroll position: the log
follows until the user scrolls up (keys, wheel, scrollbar), and a "+N new lines" badge
then counts what arrives; End (or scrolling back to the bottom) re-attaches. Nothing
else detaches it: a row added to the resource table or the upload bar appearing shrinks
the log, which used to leave it "not at the end" and stop following on its own. Lines
are bounded (``max_lines``) and timestamped with the app's clock.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Callable

from rich.cells import cell_len, chop_cells
from rich.highlighter import Highlighter
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

STAMP_WIDTH = 9  # "HH:MM:SS "; a wrapped line continues under the text, not the time


def wrap_line(line: str, width: int) -> list[str]:
    """``line`` cut into rows of at most ``width`` cells, continuations indented under the text.

    Textual's ``Log`` does not wrap (a long error or URL ran off the right edge), and
    ``RichLog`` wraps at ~10x the cost per line; short lines, nearly all, take the fast path.
    """
    if width <= STAMP_WIDTH + 10 or (len(line) <= width and line.isascii()):
        return [line]
    if not line.isascii() and cell_len(line) != len(line):  # wide characters: cut by cells
        head = chop_cells(line, width)[0]
        rest = line[len(head):]
        return [head] + [" " * STAMP_WIDTH + chunk for chunk in (chop_cells(rest, width - STAMP_WIDTH) if rest else [])]
    if len(line) <= width:
        return [line]
    rows: list[str] = []
    start, avail, prefix = 0, width, ""
    while len(line) - start > avail:
        cut = line.rfind(" ", start + 1, start + avail + 1)  # at a space when there is one
        nxt = cut + 1 if cut > start else (cut := start + avail)
        rows.append(prefix + line[start:cut])
        start, avail, prefix = nxt, width - STAMP_WIDTH, " " * STAMP_WIDTH
    rows.append(prefix + line[start:])
    return rows


class LevelHighlighter(Highlighter):
    """Colours a log level where a line has one, after its time and source tag."""

    STYLES = {"ERROR": "bold red", "CRITICAL": "bold red", "WARNING": "yellow", "WARN": "yellow",
              "DEBUG": "dim"}
    _LEVEL = re.compile(r"^\S+ (?:\[[^\]]*\] )?(?:! )?(ERROR|CRITICAL|WARNING|WARN|INFO|DEBUG)\b")

    def highlight(self, text: Text) -> None:
        m = self._LEVEL.match(text.plain)
        if m and m.group(1) in self.STYLES:
            text.stylize(self.STYLES[m.group(1)], m.start(1), m.end(1))


class TailLog(Log):
    """``Log`` that tells its pane when the user scrolls away from, or back to, the end."""

    def __init__(self, **kwargs) -> None:
        super().__init__(highlight=True, **kwargs)
        self.highlighter = LevelHighlighter()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        parent = self.parent
        if isinstance(parent, LogPane):
            parent.log_scrolled(old_value, new_value)

    def on_resize(self) -> None:
        parent = self.parent
        if isinstance(parent, LogPane):
            parent.stick_to_end()
            self.call_after_refresh(parent.stick_to_end)


class LogPane(Vertical):
    DEFAULT_CSS = """
    LogPane { height: 1fr; }
    LogPane > TailLog { height: 1fr; border: none; overflow-x: hidden; scrollbar-gutter: stable; }
    LogPane > #new-lines {
        dock: bottom; display: none; width: auto; height: 1; offset-x: 1;
        background: $accent; color: $text; padding: 0 1;
    }
    LogPane.-detached > #new-lines { display: block; }
    """

    def __init__(self, *, max_lines: int = 5000, clock: Callable[[], datetime] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self._max_lines = max_lines
        self._clock = clock or datetime.now
        self._unseen = 0
        self._following = True
        self._sticking = False
        self.lines: list[str] = []  # what was written, for saving (bounded like the view)

    def compose(self) -> ComposeResult:
        yield TailLog(max_lines=self._max_lines, auto_scroll=False, id="log-view")
        yield Static("", id="new-lines", markup=False)

    @property
    def log(self) -> TailLog:  # type: ignore[override]
        return self.query_one(TailLog)

    @property
    def following(self) -> bool:
        return self._following

    def stamp(self, text: str, at: str | None = None) -> str:
        return f"{at or format(self._clock(), '%H:%M:%S')} {text}"

    def write_lines(self, texts: "list[str | tuple[str | None, str]]") -> None:
        """Append lines (already batched by the caller); keep the end in view while following.
        A line is a string (stamped with the app's clock now) or ``(HH:MM:SS, text)``: one
        that carries the time it happened (a server or platform event), shown with that time."""
        if not texts:
            return
        stamped = []
        for item in texts:
            at, text = item if isinstance(item, tuple) else (None, item)
            for line in (text.splitlines() or [""]):
                stamped.append(self.stamp(line, at))
        self.lines.extend(stamped)
        if len(self.lines) > self._max_lines:
            del self.lines[: len(self.lines) - self._max_lines]
        log = self.log
        # Wrapped at the width the log has now (a later resize does not re-wrap old lines).
        width = log.scrollable_content_region.width or max(20, self.app.size.width - 4)  # hidden: not laid out
        rows = [row for line in stamped for row in wrap_line(line, width)]
        log.write_lines(rows, scroll_end=False)
        if self._following:
            self.stick_to_end()
            # Widgets above may grow in the same refresh (table rows, the upload bar).
            self.call_after_refresh(self.stick_to_end)
        else:
            self._unseen += len(stamped)
            self.add_class("-detached")
            self.query_one("#new-lines", Static).update(f"+{self._unseen} new lines · End to follow")

    def follow(self) -> None:
        self._reattach()
        self.stick_to_end()

    def stick_to_end(self) -> None:
        """While following, keep the log at its end (its TailLog calls this on a resize)."""
        if not self._following or not self.is_attached:
            return
        log = self.log
        self._sticking = True
        try:
            log.scroll_end(animate=False, immediate=True, x_axis=False)
        finally:
            self._sticking = False

    def log_scrolled(self, old: float, new: float) -> None:
        """Its TailLog scrolled: away from the end detaches the pane, back to it follows again."""
        if self._sticking:
            return
        log = self.log
        if log.is_vertical_scroll_end:
            self._reattach()
        elif new < old:  # the user scrolled up (a shrinking log clamps to the end instead)
            self._following = False

    def _reattach(self) -> None:
        self._following = True
        if self._unseen or self.has_class("-detached"):
            self._unseen = 0
            self.remove_class("-detached")

    def clear(self) -> None:
        self.lines.clear()
        self.log.clear()
        self._reattach()

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
