"""``PacedStream``: paces streamed text into a ``Markdown`` answer (few, larger appends)."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

from textual.widgets import Markdown


class PacedStream:
    """Feeds a ``Markdown`` (best a ``StreamedAnswer``) at most every ``interval`` seconds.

    ``write`` only buffers, so the caller goes on reading the socket; one task appends what
    has gathered, one append at a time. Each append costs a parse of the live block and a
    layout, so fewer, larger appends keep up with thousands of tokens per second, and text
    waits at most ``interval`` (plus the append before it). Textual's ``MarkdownStream`` is
    not used: its ``stop`` cancels its task, and a cancel that lands while an append is in
    flight starts the last append beside it (``Markdown.append`` reads the source when
    called); here an append is never cancelled, and ``stop`` waits for the last one.
    """

    def __init__(self, markdown: Markdown, interval: float = 0.05) -> None:
        self._markdown = markdown
        self._interval = interval
        self._buffer: list[str] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.writes = 0

    async def write(self, text: str) -> None:
        if self._stopping.is_set():
            raise RuntimeError("write after stop")
        if not text:
            return
        self._buffer.append(text)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = -self._interval
        while True:
            await self._wake.wait()
            delay = last + self._interval - time.monotonic()
            if delay > 0 and not self._stopping.is_set():
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            self._wake.clear()
            if self._buffer:
                text = "".join(self._buffer)
                self._buffer.clear()
                last = time.monotonic()
                self.writes += 1
                try:
                    await self._markdown.append(text)
                except Exception:
                    if self._markdown.is_attached:
                        raise
                    return  # the answer was taken off the screen (a failed turn): nothing to draw
            if self._stopping.is_set() and not self._buffer:
                return

    async def stop(self) -> None:
        """Draw what is buffered, then let the answer freeze its last block; safe to call twice."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        from .answer import StreamedAnswer

        if isinstance(self._markdown, StreamedAnswer):
            self._markdown.finish()
