"""A chat answer that streams Markdown at thousands of tokens per second, however long.

Textual's ``Markdown`` builds a widget per block (about four per list item, one per table
cell), and making them and laying them all out on every frame is what let list-heavy
answers fall seconds behind the stream. Every top-level block but the last is final
(``Markdown.append`` only ever replaces the last one), so finished blocks move into one
``FrozenRun`` at the top of the answer, spaced with the blocks' own margins as the
vertical layout spaces them (answer_lines.py):

- paragraphs, lists of one-paragraph items, code blocks whose lines fit and tables of
  one-line cells are drawn straight to lines from their markdown-it tokens, never made into
  widgets, with the styles of a hidden sample of each (answer_draw.py, answer_table.py,
  answer_tokens.py). The block still being written is drawn the same way, again on each
  append, into a ``TailRun`` below the run;
- any other block (quotes, headings, nested lists, wrapping tables, wide code) is mounted,
  and once the screen has laid it out, drawn off screen by Textual's own compositor and
  taken down. That costs far more, so it is the exception.

Only the text past the last finished block is parsed again on an append. Drawing stops
for the frame after ``DRAW_BUDGET_S`` and goes on at the next (a redraw of a long answer
for a new width, a burst after a stall), and full garbage collections wait while the
answer streams (answer_gc.py): measured under benchmarks/tui_bench.py, those were the
event-loop stalls over 100 ms.

So the finished answer is one widget, drawn exactly as ``Markdown(text)`` draws the same
text (tests/ui/test_markdown_stream.py compares every cell). A new width or theme draws
the text again.

``PacedStream`` feeds it: ``write(text)`` while streaming, ``stop()`` in a ``finally``.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import suppress

from markdown_it import MarkdownIt
from markdown_it.token import Token
from textual.await_complete import AwaitComplete
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Markdown
from textual.widgets._markdown import MarkdownBlock, MarkdownFence, MarkdownTable

from . import answer_gc
from .answer_draw import BlockDrawer, StyleRig
from .answer_lines import DrawnLines, FrozenRun, TailRun, render_widget
from .answer_table import TableTokens
from .answer_tokens import KINDS, BlockTokens

# The widget classes BlockDrawer draws as (an answer given other classes keeps its widgets).
_DRAWN = {kind: Markdown.BLOCKS[kind] for kind in KINDS}


def _widget(block: MarkdownBlock | BlockTokens) -> MarkdownBlock:
    return block.block() if isinstance(block, BlockTokens) else block


# Drawing finished blocks stops for the frame after this long; the rest is drawn on the next
# (a redraw of a long answer for a new width would otherwise hold the loop for its length).
DRAW_BUDGET_S = 0.015


class StreamedAnswer(Markdown):
    """A ``Markdown`` whose finished blocks collapse into pre-drawn lines (see the module doc)."""

    GC_IDLE_S = 2.0  # a stream quiet this long lets full collections run again

    def __init__(self, markdown: str | None = None, *, classes: str | None = None, id: str | None = None) -> None:
        super().__init__(markdown, classes=classes, id=id)
        self.streaming = True
        self.applied_chars = 0  # characters of the source on screen (benchmark: what is drawn next)
        self._unshown = False  # text waits for the answer's first layout, or for the next frame
        self._queue: list[MarkdownBlock | BlockTokens] = []  # finished blocks left to draw next frame
        self._rendered_width = 0
        self._waits = 0  # refreshes the text waited for a first layout
        self._drawer_for: tuple[tuple[int, str], BlockDrawer] | None = None
        # Markdown.append reads the source and _last_parsed_line when called, not when it runs:
        # every change to them (append, update, re-render) runs alone, in call order.
        self._op_lock = asyncio.Lock()
        self._gc: answer_gc.GCHold | None = None  # full collections wait while this streams
        self._gc_timer: asyncio.TimerHandle | None = None

    # -- appending ---------------------------------------------------------------------
    def append(self, markdown: str) -> AwaitComplete:
        async def appended() -> None:
            self._hold_gc()
            async with self._op_lock:
                # Before each append, not on a timer: while text streams in there is always a
                # next append, and the blocks the last one finished have been laid out since.
                await self._freeze_ready(include_last=False)
                self._markdown = self.source + markdown
                await self._apply()

        return AwaitComplete(appended())

    async def _apply(self) -> None:
        """Show the source up to its end, drawing what can be drawn (under the op lock)."""
        width = self.content_size.width
        run = self._run()
        stale = any((c.frozen_width, c.frozen_theme) != (width, self.app.theme)
                    for c in self.query_children(DrawnLines) if c.display)
        if stale and width and self.size.width:
            # A new width or theme: redraw now, before this text is appended as widgets that
            # the redraw already queued (on_resize) would only take down again.
            await self._rebuild(None)
            return
        drawer = self._drawer(width) if run is None else None if run.frozen_width != width else self._drawer(width)
        if drawer is None and self._waits < 3 and (not self.size.width or not self._rig_ready()):
            # Not laid out yet (the first frames): what has come in waits for the next
            # refresh rather than becoming widgets that are costly to make and to freeze.
            self._waits += 1
            self._unshown = True
            self.call_after_refresh(self._apply_later)
            return
        self._unshown = False
        await self._append_locked(drawer, width)
        if not self._unshown:
            self.applied_chars = len(self.source)

    async def _apply_later(self) -> None:
        if self.is_attached and self._unshown:
            async with self._op_lock:
                if self._unshown:
                    await self._apply()

    def _rig_ready(self) -> bool:
        rig = next((c for c in self.children if isinstance(c, StyleRig)), None)
        return rig is not None and rig.samples() is not None

    async def _append_locked(self, drawer: BlockDrawer | None, width: int) -> None:
        """``Markdown.append`` of what the source has beyond the last parse, except that
        finished blocks that ``BlockDrawer`` can draw, with nothing live above them, are drawn
        straight into the run instead of becoming widgets."""
        start = self._last_parsed_line
        parser = MarkdownIt("gfm-like") if self._parser_factory is None else self._parser_factory()
        tokens = parser.parse("".join(self._markdown.splitlines(keepends=True)[start:]))
        blocks = self._blocks(tokens)
        for token in reversed(tokens):
            if token.map is not None and token.level == 0:
                self._last_parsed_line = start + token.map[0]
                break
        for block in blocks:
            first, end = block.source_range
            block.source_range = (first + start, end + start)
        queued, self._queue = self._queue, []
        if not blocks and not queued:
            return
        live = list(self.query_children(MarkdownBlock))
        assert not (live and queued), "blocks wait to be drawn only with nothing live below the run"
        deadline = time.perf_counter() + DRAW_BUDGET_S
        with self.app.batch_update():
            rest = queued + blocks
            drawn: list[tuple[MarkdownBlock | BlockTokens, list[Strip]]] = []
            above_is_live = False
            if live:
                tail = live.pop()  # blocks[0] is the new text of the tail
                lines = drawer.draw(blocks[0], width) if drawer is not None and len(blocks) > 1 and not live else None
                if lines is not None:
                    tail.display = False  # finished: drawn into the run instead
                    await tail.remove()
                    drawn.append((blocks[0], lines))
                else:
                    tail.source_range = blocks[0].source_range
                    if isinstance(tail, (MarkdownTable, MarkdownFence)):
                        # Made anew: Textual updates these in place, a table from the rows it
                        # had when composed (an update before that lost rows), a code block's
                        # label without its width (frozen cut short). Found by stress tests.
                        await MarkdownBlock._update_from_block(tail, _widget(blocks[0]))
                    else:
                        await tail._update_from_block(_widget(blocks[0]))
                    above_is_live = True
                rest = blocks[1:]
            taken = 0
            stopped = False
            finished: list[MarkdownBlock | BlockTokens] = []
            if drawer is not None and not live and not above_is_live:
                # The last parsed block may still grow, until the text is finished.
                finished = rest[:-1] if blocks and self.streaming else rest
                for block in finished:
                    if drawn and time.perf_counter() > deadline:
                        # The rest waits for the next frame, but for the last parsed block:
                        # it is parsed again then (from _last_parsed_line).
                        stopped = True
                        self._queue = [b for b in finished[taken:] if not (blocks and b is blocks[-1])]
                        break
                    lines = drawer.draw(block, width)
                    if lines is None:
                        break
                    drawn.append((block, lines))
                    taken += 1
            if drawn:
                assert drawer is not None
                self._extend_run(drawer, drawn, width)
            tail_lines = None
            if drawer is not None and not stopped and rest[taken:] and taken == len(finished) \
                    and not live and not above_is_live:
                tail_lines = drawer.draw(rest[-1], width)
            if tail_lines is not None:
                assert drawer is not None
                top, bottom = drawer.margins(rest[-1])
                (await self._tail()).show(tail_lines, width, self.app.theme, top, bottom)
                self._rendered_width = self.size.width
                return
            self._hide_tail()
            if stopped:
                self._unshown = True
                self.call_after_refresh(self._apply_later)
            elif rest[taken:]:
                await self.mount_all([_widget(block) for block in rest[taken:]])

    async def _tail(self) -> TailRun:
        tail = next((c for c in self.children if isinstance(c, TailRun)), None)
        if tail is None:
            tail = TailRun()
            run = self._run()
            await (self.mount(tail, after=run) if run is not None else self.mount(tail, before=0))
        return tail

    def _hide_tail(self) -> None:
        for tail in self.query_children(TailRun):
            tail.hide()

    def _tail_shown(self) -> bool:
        return any(tail.display for tail in self.query_children(TailRun))

    def _blocks(self, tokens: list[Token]) -> list[MarkdownBlock | BlockTokens]:
        """``_parse_markdown(tokens)``, except that the top-level blocks ``BlockDrawer`` may draw
        stay tokens until they must be widgets (answer_tokens.py)."""
        blocks: list[MarkdownBlock | BlockTokens] = []
        group: list[Token] = []
        for token in tokens:
            group.append(token)
            if token.level == 0 and token.nesting <= 0:  # a top-level block ends here
                kind = group[0].type
                if kind == "table_open":
                    blocks.append(TableTokens(group, self._make_block))
                elif kind in KINDS and self.BLOCKS.get(kind) is _DRAWN.get(kind):
                    blocks.append(BlockTokens(group, self._make_block))
                else:
                    blocks.extend(self._parse_markdown(group))
                group = []
        if group:
            blocks.extend(self._parse_markdown(group))
        return blocks

    def _make_block(self, tokens: list[Token]) -> MarkdownBlock:
        (block,) = self._parse_markdown(tokens)
        return block

    def _run(self) -> FrozenRun | None:
        return next((c for c in self.children if isinstance(c, FrozenRun)), None)

    def _drawer(self, width: int) -> BlockDrawer | None:
        rig = next((c for c in self.children if isinstance(c, StyleRig)), None)
        if rig is None or not width or not self.size.width:
            return None
        key = (width, self.app.theme)
        if self._drawer_for is None or self._drawer_for[0] != key:
            drawer = BlockDrawer(rig)
            if not drawer.ready:
                return None
            self._drawer_for = (key, drawer)
        return self._drawer_for[1]

    def _gap(self, width: int) -> Strip:
        gutter = self.styles.gutter
        return self.render_lines(Region(gutter.left, gutter.top, width, 1))[0]

    def _extend_run(self, drawer: BlockDrawer, drawn: list[tuple[MarkdownBlock | BlockTokens, list[Strip]]],
                    width: int) -> None:
        """Add drawn blocks below the run, spaced as the vertical layout spaces widgets."""
        run = self._run()
        gap = self._gap(width)
        above = run.styles.margin.bottom if run is not None and run.strips else None
        lines: list[Strip] = []
        first_top = bottom = 0
        for i, (block, block_lines) in enumerate(drawn):
            top, bottom = drawer.margins(block)
            if i == 0:
                first_top = top
            if above is not None:
                lines.extend([gap] * max(above, top))
            lines.extend(block_lines)
            above = bottom
        if run is None:
            run = FrozenRun()
            self.mount(run, before=0)
        run.extend(lines, width, self.app.theme, first_top, bottom)
        self._rendered_width = self.size.width

    def update(self, markdown: str) -> AwaitComplete:
        return AwaitComplete(self._replace(markdown))

    async def _replace(self, markdown: str | None) -> None:
        """Render ``markdown`` (None: the source as it is once the lock is ours) from scratch,
        drawing what can be drawn, as an append of the whole text would."""
        async with self._op_lock:
            run = self._run()
            if markdown is None and run is not None and \
                    (run.frozen_width, run.frozen_theme) == (self.content_size.width, self.app.theme):
                return  # already redrawn for this width and theme (by an append since)
            await self._rebuild(markdown)
        self.call_after_refresh(self._freeze_later)

    async def _rebuild(self, markdown: str | None) -> None:
        """The body of ``_replace``, under the op lock."""
        with self.app.batch_update():
            await self.remove_children([c for c in self.children if isinstance(c, (DrawnLines, MarkdownBlock))])
            if not self.query_children(StyleRig):
                await self.mount(StyleRig())
        self._markdown = self.source if markdown is None else markdown
        self._last_parsed_line = 0
        self._queue = []
        self._table_of_contents = None
        if markdown is not None:
            self.applied_chars = 0  # a new text; the same text redrawn stays on screen till then
        self._waits = 0
        await self._apply()

    def finish(self) -> None:
        """The text is complete: the last block may be frozen too."""
        self.streaming = False
        self.call_after_refresh(self._freeze_later)

    # -- garbage collection while streaming (answer_gc.py) -------------------------------
    def _hold_gc(self) -> None:
        if self._gc is None and self.streaming:
            self._gc = answer_gc.hold()
        if self._gc is not None:
            # A stream that pauses (or an answer never finished) gives full collections back.
            if self._gc_timer is not None:
                self._gc_timer.cancel()
            self._gc_timer = asyncio.get_running_loop().call_later(self.GC_IDLE_S, self._release_gc)

    def _release_gc(self) -> None:
        if self._gc_timer is not None:
            self._gc_timer.cancel()
            self._gc_timer = None
        if self._gc is not None:
            self._gc, held = None, self._gc
            held.release()

    def on_unmount(self) -> None:
        self._release_gc()

    # -- freezing ----------------------------------------------------------------------
    async def _freeze_later(self, tries: int = 50) -> None:
        """Freeze what is ready once nothing else is changing (an after-refresh callback)."""
        if not self.is_attached or tries <= 0:
            self._release_gc()
            return
        done = False
        pending = self._unshown
        if not pending and not self._op_lock.locked() and not self.screen._layout_required:
            async with self._op_lock:
                if not self.streaming and self._tail_shown():
                    await self._apply()  # the text is finished: its last block too goes into the run
                done = await self._freeze_ready(include_last=not self.streaming) and not self._unshown
        if not done:  # blocks still waiting for their first layout: after the next refresh
            self.call_after_refresh(self._freeze_later, tries - 1)
        elif not self.streaming:
            self.call_after_refresh(self._release_gc)  # once the last lines are on screen

    async def _freeze_ready(self, include_last: bool) -> bool:
        """Move the lines of finished, laid-out blocks into the run; True when none is left.

        Every block but the last is final (``Markdown.append`` only replaces the last). A
        block is drawn only when the size the screen gave it is the size a fresh arrangement
        gives it now, so a block changed since the last layout waits for the next one.
        """
        run = self._run()
        live = list(self.query_children(MarkdownBlock))
        candidates = live if include_last else live[:-1]
        if not candidates:
            return True
        width = self.content_size.width
        if not width or (run is not None and run.frozen_width != width):
            return False  # not laid out yet, or the width changed and a re-render is on its way
        fresh = {p.widget: p.region.size for p in self.arrange(self.content_size).placements}
        blocks: list[MarkdownBlock] = []
        for block in candidates:
            if not block.size or fresh.get(block) != block.size or self._pending_layout(block):
                break
            blocks.append(block)
        if not blocks:
            return False
        lines = self._draw(blocks, width, run.styles.margin.bottom if run is not None else None)
        if run is None:
            run = FrozenRun()
            await self.mount(run, before=0)
        run.extend(lines, width, self.app.theme, blocks[0].styles.margin.top, blocks[-1].styles.margin.bottom)
        self._rendered_width = self.size.width
        with self.app.batch_update():
            for block in blocks:
                block.display = False
            await self.remove_children(blocks)
        return len(blocks) == len(candidates)

    @staticmethod
    def _pending_layout(block: MarkdownBlock) -> bool:
        return any(w._layout_required for w in block.walk_children(with_self=True))

    def _draw(self, blocks: list[MarkdownBlock], width: int, margin_above: int | None) -> list[Strip]:
        """The lines ``blocks`` occupy below the run, as Textual's vertical layout places them:
        each block's own lines, and between blocks the larger of the two margins (collapsed),
        painted as this widget paints the space between its children."""
        gutter = self.styles.gutter
        gap = self.render_lines(Region(gutter.left, gutter.top, width, 1))[0]
        lines: list[Strip] = []
        for block in blocks:
            margin = block.styles.margin
            if margin_above is not None:
                lines.extend([gap] * max(margin_above, margin.top))
            size = block.size
            x0 = min(margin.left, width)
            for strip in render_widget(block, size.region):
                if x0 == 0 and size.width == width:
                    lines.append(strip)
                else:
                    lines.append(Strip.join([gap.crop(0, x0), strip.crop(0, width - x0),
                                             gap.crop(x0 + size.width, width)]))
            margin_above = margin.bottom
        return lines

    # -- width and theme changes --------------------------------------------------------
    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: object) -> None:
        if self.query_children(DrawnLines):
            self._rerender()

    def on_resize(self) -> None:
        if self._rendered_width and self.size.width != self._rendered_width and self.query_children(DrawnLines):
            self._rendered_width = 0
            self._rerender()

    def _rerender(self) -> None:
        """Frozen lines are only right for the width and theme they were drawn with."""
        self.run_worker(self._replace(None), group="rerender")


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
        if isinstance(self._markdown, StreamedAnswer):
            self._markdown.finish()
