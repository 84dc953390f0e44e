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

from textual.app import ComposeResult
from textual.containers import Vertical
from rich.text import Text
from textual.widgets import RichLog, Static

# Control characters (a replica's ANSI colours, bells, carriage returns) would move the
# terminal's cursor; they are shown as the replacement character, as Textual's Log does.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TailLog(RichLog):
    """``Log`` that tells its pane when the user scrolls away from, or back to, the end."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        parent = self.parent
        if isinstance(parent, LogPane):
            parent._scrolled(old_value, new_value)

    def on_resize(self) -> None:
        parent = self.parent
        if isinstance(parent, LogPane):
            # After RichLog's own handler, which renders what was written while hidden.
            self.call_after_refresh(parent._stick)


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
        # Long lines wrap (an error's detail, a URL) instead of running off the right edge.
        yield TailLog(max_lines=self._max_lines, min_width=20, wrap=True, highlight=False, markup=False,
                      auto_scroll=False, id="log-view")
        yield Static("", id="new-lines")

    @property
    def log(self) -> TailLog:  # type: ignore[override]
        return self.query_one(TailLog)

    @property
    def following(self) -> bool:
        return self._following

    def stamp(self, text: str) -> str:
        return f"{self._clock():%H:%M:%S} {text}"

    def write_lines(self, texts: list[str]) -> None:
        """Append lines (already batched by the caller); keep the end in view while following."""
        if not texts:
            return
        stamped = []
        for text in texts:
            for line in (text.splitlines() or [""]):
                stamped.append(self.stamp(line))
        self.lines.extend(stamped)
        if len(self.lines) > self._max_lines:
            del self.lines[: len(self.lines) - self._max_lines]
        text = Text("\n".join(_CONTROL.sub("\ufffd", line.expandtabs()) for line in stamped), overflow="fold")
        self.log.write(text, scroll_end=False)
        if self._following:
            self._stick()
            # Widgets above may grow in the same refresh (table rows, the upload bar).
            self.call_after_refresh(self._stick)
        else:
            self._unseen += len(stamped)
            self.add_class("-detached")
            self.query_one("#new-lines", Static).update(f"+{self._unseen} new lines · End to follow")

    def follow(self) -> None:
        self._reattach()
        self._stick()

    def _stick(self) -> None:
        if not self._following or not self.is_attached:
            return
        log = self.log
        self._sticking = True
        try:
            log.scroll_end(animate=False, immediate=True, x_axis=False)
        finally:
            self._sticking = False

    def _scrolled(self, old: float, new: float) -> None:
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
