"""``aitk chat`` while :func:`aitk_tui.chat.wake.wake` waits: one status line on stderr,
drawn by the CLI's one renderer of events (``cli_cloud.EventPrinter``).

On a terminal the line is rewritten in place ("waking the replica… 12 s · <latest replica
log line>") and ends with a newline when the replica is awake or on Ctrl+C; into a file or
a pipe it prints a line when the replica's log line changes or every 10 s, so a CI log
stays short. stdout carries only the answer.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TextIO

from .errors import redact
from .events import Event


class StatusLine:
    def __init__(self, err: TextIO | None = None) -> None:
        self.err = err or sys.stderr
        self.tty = bool(getattr(self.err, "isatty", lambda: False)())
        self._shown = False
        self._last: tuple[str | None, float] | None = None

    def waking(self, elapsed_s: float, log_line: str | None) -> None:
        text = f"waking the replica… {elapsed_s:.0f} s" + (f" · {log_line}" if log_line else "")
        if self.tty:
            width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
            self.err.write("\r\x1b[K" + redact(text)[:width])
            self.err.flush()
            self._shown = True
            return
        last = self._last
        if last is None or last[0] != log_line or elapsed_s - last[1] >= 10:
            self._last = (log_line, elapsed_s)
            print(redact(text), file=self.err, flush=True)

    def awake(self, elapsed_s: float) -> None:
        self.close()
        print(f"the replica is awake after {elapsed_s:.0f} s", file=self.err, flush=True)

    def close(self) -> None:
        if self._shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._shown = False


async def wake_first(client: Any, logs: Callable[[], AsyncIterator[Event]] | None, err: TextIO | None = None,
                     **options: Any) -> None:
    """Wait (showing progress) until the endpoint is healthy; returns at once when it is.
    Raises ChatError as :func:`~aitk_tui.chat.wake.wake` does; Ctrl+C cancels."""
    from .chat.wake import wake
    from .cli_cloud import EventPrinter

    printer = EventPrinter(err=err)  # the CLI's one renderer of events
    try:
        async with aclosing(wake(client, logs=logs, **options)) as events:
            async for event in events:
                printer(event)
    finally:
        printer.close()
