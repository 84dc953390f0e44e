"""Compare mode: one conversation sent to two models, both answers streamed side by side.

Each side is its own conversation (its own history goes with its next request) and its
own stream, so a slow or failing model never holds the other back. Side by side on a wide
terminal, stacked below 100 columns. Esc stops both answers; with nothing streaming it
closes the screen. The streaming and rendering pieces are the chat pane's (``PacedStream``
into a ``StreamedAnswer``, ``format_stats``, ``explain_chat_error``), and so is the client:
``ChatPane.make_client`` with the URL, key and TLS check the chat uses. The main screen opens
it (``MainScreen.action_compare_models``) with the chat's settings and its wake check.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from ...errors import AitkError
from .answer import PacedStream, StreamedAnswer
from .chat_text import explain_chat_error, format_stats, stop_stream
from .prompt import PromptArea

STACK_BELOW = 100  # columns: two 50-column answers are the narrowest that still read well


@dataclass(eq=False)
class _Turn:
    """One question on one side: what the worker saw, for the handler to show."""

    text: str
    markdown: StreamedAnswer
    stream: PacedStream
    parts: list[str] = field(default_factory=list)
    finished: Any = None
    error: Any = None
    stopped: bool = False


class CompareSide(Vertical):
    """One model's column: its conversation, its live answer and its statistics."""

    DEFAULT_CSS = """
    CompareSide { width: 1fr; height: 1fr; border: round $primary-darken-2; padding: 0 1; }
    CompareSide .side-title { text-style: bold; color: $accent; width: 1fr; }
    CompareSide VerticalScroll { height: 1fr; scrollbar-gutter: stable; }  /* as the chat's: no redraw */
    CompareSide .user-msg { margin: 1 0 0 0; padding: 0 1; background: $boost; text-style: bold; }
    CompareSide .answer { margin: 0; padding: 0; }
    CompareSide .answer-stats { color: $text-muted; }
    CompareSide .chat-error { color: $error; margin-top: 1; }
    """

    class Ended(Message):
        def __init__(self, side: "CompareSide", turn: _Turn) -> None:
            super().__init__()
            self.side, self.turn = side, turn

    def __init__(self, model: str, make_client: Callable[[], Any], *, url: str = "",
                 platform_check: Callable[[str], Any] | None = None, id: str) -> None:
        super().__init__(id=id)
        self.model = model
        self.make_client = make_client
        self.url = url
        self.platform_check = platform_check  # url -> the ask "did the app's revision fail?" (or None)
        self.turns: list[dict[str, str]] = []  # this side's own history
        self.streaming = False
        self.last_answer = ""
        self.last_stats = ""
        self.update_interval = 0.05
        self._stop = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Label(self.model, classes="side-title", markup=False)
        yield VerticalScroll(classes="side-conversation")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).anchor()

    async def ask(self, text: str, settings: dict[str, Any]) -> None:
        self.streaming = True
        self._stop.clear()
        markdown = StreamedAnswer(classes="answer")
        await self.query_one(VerticalScroll).mount_all([Static(text, classes="user-msg", markup=False), markdown])
        self._stream(_Turn(text, markdown, PacedStream(markdown, self.update_interval)), settings)

    def stop(self) -> None:
        self._stop.set()

    @work(group="compare", exit_on_error=False)
    async def _stream(self, turn: _Turn, settings: dict[str, Any]) -> None:
        from ...chat.client import ChatError

        client = self.make_client()
        messages = [*(settings.get("system") or []), *self.turns, {"role": "user", "content": turn.text}]
        receive = asyncio.ensure_future(self._receive(client, messages, settings, turn))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():  # Esc: closing the stream tells the server to stop generating
                turn.stopped = True
                receive.cancel()
            with suppress(asyncio.CancelledError):
                await receive
        except ChatError as e:
            turn.error = e
        finally:
            stop.cancel()
            await stop_stream(turn.stream)
            with suppress(Exception):
                await asyncio.shield(client.aclose())
        self.post_message(self.Ended(self, turn))

    async def _receive(self, client: Any, messages: list[dict[str, str]], settings: dict[str, Any],
                       turn: _Turn) -> None:
        from ...chat.client import Delta, Finished, sanitize

        await self._wake(client)
        async with aclosing(client.stream_chat(messages, model=self.model, temperature=settings.get("temperature"),
                                               max_tokens=settings.get("max_tokens"))) as events:
            async for item in events:
                if isinstance(item, Delta):
                    clean = sanitize(item.text)
                    if clean:
                        turn.parts.append(clean)
                        await turn.stream.write(clean)
                elif isinstance(item, Finished):
                    turn.finished = item

    async def _wake(self, client: Any) -> None:
        """A replica that scaled to zero since the last question: say so in this side's title
        until /health is ok (as the chat does); Esc stops the waiting like the answer."""
        from ...chat.wake import wake
        from ...events import Waking

        title = self.query_one(".side-title", Label)
        # As the chat: a revision that failed to activate stops the waiting, saying why.
        platform = self.platform_check(self.url) if self.platform_check is not None and self.url else None
        try:
            async with aclosing(wake(client, platform=platform)) as events:
                async for event in events:
                    if isinstance(event, Waking):
                        title.update(f"{self.model} · waking the replica… {event.elapsed_s:.0f} s")
        finally:
            title.update(self.model)

    @on(Ended)
    async def _ended(self, event: Ended) -> None:
        turn = event.turn
        conversation = self.query_one(VerticalScroll)
        answer = "".join(turn.parts)
        if turn.error is not None:  # the turn did not happen on this side: its history is unchanged
            await turn.markdown.remove()
            error = turn.error
            message = explain_chat_error(error.message, getattr(error, "status", None))
            detail = f" ({error.detail})" if error.detail else ""
            await conversation.mount(Static(f"✕ {message}{detail}", classes="chat-error", markup=False))
            self.last_stats = f"✕ {message}"
        else:
            if turn.markdown.source != answer:
                await turn.markdown.update(answer)
            self.turns += [{"role": "user", "content": turn.text}, {"role": "assistant", "content": answer}]
            self.last_answer = answer
            self.last_stats = (f"■ stopped · {len(answer)} characters kept" if turn.stopped
                               else format_stats(turn.finished, answer))
            await conversation.mount(Static(self.last_stats, classes="answer-stats", markup=False))
        self.streaming = False  # then the message bubbles to the screen, which gives the prompt back


class CompareScreen(Screen):
    BINDINGS = [Binding("escape", "stop_or_close", "Stop / close", id="compare.stop")]
    HELP = """
## Compare models
The same question goes to both models; both answers stream at once, side by side
(one above the other below 100 columns).

- **Enter** sends to both; **ctrl+j** inserts a new line.
- **Esc** stops both answers; with nothing streaming it closes compare mode.
- Each side keeps its own conversation: its own answers go with its next turn.
- Under each answer: time to first token, tokens per second and tokens.
"""
    DEFAULT_CSS = """
    CompareScreen { layout: vertical; }
    CompareScreen #compare-title { padding: 0 1; text-style: bold; width: 1fr; }
    CompareScreen #compare-sides { layout: horizontal; height: 1fr; }
    CompareScreen.-stacked #compare-sides { layout: vertical; }
    CompareScreen #compare-status { height: 1; padding: 0 1; color: $text-muted; }
    CompareScreen PromptArea { margin: 0 1; }
    """

    def __init__(self, models: tuple[str, str], make_client: Callable[[], Any], settings: dict[str, Any],
                 url: str, *, platform_check: Callable[[str], Any] | None = None) -> None:
        super().__init__(id="compare-screen")
        self.models, self.settings, self.url = models, settings, url
        self.sides = tuple(CompareSide(model, make_client, url=url, platform_check=platform_check, id=f"compare-{ab}")
                           for model, ab in zip(models, "ab"))

    def compose(self) -> ComposeResult:
        yield Label(f"Compare · {self.models[0]} vs {self.models[1]} · {self.url}", id="compare-title", markup=False)
        with Container(id="compare-sides"):
            yield from self.sides
        yield Static("Enter sends to both · Esc stops both (closes when idle)", id="compare-status", markup=False)
        yield PromptArea(id="compare-prompt")
        yield Footer()

    def on_mount(self) -> None:
        self._stack()
        self.query_one(PromptArea).focus()

    def on_resize(self) -> None:
        self._stack()

    def _stack(self) -> None:
        self.set_class(self.size.width < STACK_BELOW, "-stacked")

    @property
    def streaming(self) -> bool:
        return any(side.streaming for side in self.sides)

    @on(PromptArea.Submitted)
    async def _submitted(self, event: PromptArea.Submitted) -> None:
        event.stop()
        await self.send(event.text)

    async def send(self, text: str) -> None:
        text = text.strip()
        if not text or self.streaming:
            return
        prompt = self.query_one(PromptArea)
        prompt.text = ""
        prompt.set_busy(True)
        self.query_one("#compare-status", Static).update("Generating on both… Esc stops both")
        for side in self.sides:  # both busy before either starts: a fast side must not free the prompt
            side.streaming = True
        for side in self.sides:
            await side.ask(text, self.settings)

    @on(CompareSide.Ended)
    def _side_ended(self, event: CompareSide.Ended) -> None:
        if self.streaming:
            return
        prompt = self.query_one(PromptArea)
        prompt.set_busy(False)
        prompt.focus()
        self.query_one("#compare-status", Static).update("Enter sends to both · Esc stops both (closes when idle)")

    def action_stop_or_close(self) -> None:
        if self.streaming:
            for side in self.sides:
                side.stop()
        else:
            self.dismiss()


class NotEnoughModels(AitkError):
    pass
