"""A log with real tail semantics (the toolong habit).

Follows new lines only while scrolled to the bottom; scrolling up detaches it and a
"+N new lines" badge counts what arrived since; End (or scrolling back down) re-attaches.
Lines are bounded (``max_lines``) and timestamped with the app's clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static


class TailLog(Log):
    """``Log`` that tells its parent when it is detached from / re-attached to the end."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        parent = self.parent
        if isinstance(parent, LogPane) and self.is_vertical_scroll_end:
            parent._reattached()


class LogPane(Vertical):
    DEFAULT_CSS = """
    LogPane { height: 1fr; }
    LogPane > TailLog { height: 1fr; border: none; }
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
        self.lines: list[str] = []  # what was written, for saving (bounded like the view)

    def compose(self) -> ComposeResult:
        yield TailLog(max_lines=self._max_lines, highlight=False, auto_scroll=True)
        yield Static("", id="new-lines")

    @property
    def log(self) -> TailLog:  # type: ignore[override]
        return self.query_one(TailLog)

    @property
    def following(self) -> bool:
        return not self.has_class("-detached")

    def stamp(self, text: str) -> str:
        return f"{self._clock():%H:%M:%S} {text}"

    def write_lines(self, texts: list[str]) -> None:
        """Append lines (already batched by the caller); follow only while at the end."""
        if not texts:
            return
        stamped = []
        for text in texts:
            for line in (text.splitlines() or [""]):
                stamped.append(self.stamp(line))
        log = self.log
        at_end = log.is_vertical_scroll_end or log.max_scroll_y == 0
        self.lines.extend(stamped)
        if len(self.lines) > self._max_lines:
            del self.lines[: len(self.lines) - self._max_lines]
        log.write_lines(stamped)
        if not at_end:
            self._unseen += len(stamped)
            self.add_class("-detached")
            self.query_one("#new-lines", Static).update(f"+{self._unseen} new lines · End to follow")

    def follow(self) -> None:
        self.log.scroll_end(animate=False, immediate=True)
        self._reattached()

    def _reattached(self) -> None:
        if self._unseen or self.has_class("-detached"):
            self._unseen = 0
            self.remove_class("-detached")

    def clear(self) -> None:
        self.lines.clear()
        self.log.clear()
        self._reattached()

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")
