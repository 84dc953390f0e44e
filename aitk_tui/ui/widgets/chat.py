"""The Chat tab: stream answers from the inference endpoint or any OpenAI-compatible URL.

Answers stream through ``MarkdownStream`` into a container anchored to the bottom; the
prompt is locked while streaming and restored on failure; Esc stops generating; errors
(401, 429, an endpoint still waking) are explained inline. Model text is sanitized
before it is rendered. The conversation lives for the session and saves as Markdown.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Collapsible, Input, Label, Markdown, Static

from ..commands import bindings_for
from .prompt import PromptArea


def explain_chat_error(message: str, status: int | None) -> str:
    """One sentence a user can act on, by HTTP status."""
    if status in (401, 403):
        return (f"The endpoint refused the API key (HTTP {status}). Go to inference endpoint (F9) fetches "
                "the app's key, or type the right key under Settings.")
    if status == 429:
        return f"The server is busy (HTTP 429, too many requests): {message}. Wait a moment and send again."
    if status in (502, 503, 504) or status is None and _looks_unreachable(message):
        return ("The endpoint is not answering yet: a container app scaled to zero takes a few minutes "
                f"to wake and load its model ({message}). Send again shortly.")
    if status == 404:
        return "This URL does not serve /v1/chat/completions (HTTP 404); check the endpoint under Settings."
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _looks_unreachable(message: str) -> bool:
    text = message.lower()
    return any(w in text for w in ("connect", "unreachable", "timed out", "timeout", "refused", "waking",
                                   "loading", "asleep", "starting"))


class PacedStream:
    """``MarkdownStream`` fed at most every ``interval`` seconds.

    Each Markdown append costs a layout of the whole conversation (O(blocks)); fewer, larger
    appends leave the event loop free to read the socket at thousands of tokens per second.
    Text is never held longer than ``interval``: a timer flushes what is buffered.
    """

    def __init__(self, markdown: Markdown, interval: float = 0.05) -> None:
        self._stream = Markdown.get_stream(markdown)
        self._interval = interval
        self._buffer: list[str] = []
        self._last = 0.0
        self._timer: asyncio.Task | None = None
        self.writes = 0

    async def write(self, text: str) -> None:
        self._buffer.append(text)
        now = time.monotonic()
        if now - self._last >= self._interval:
            await self._flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(self._last + self._interval - now))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timer = None
        await self._flush()

    async def _flush(self) -> None:
        if self._buffer:
            text = "".join(self._buffer)
            self._buffer.clear()
            self._last = time.monotonic()
            self.writes += 1
            await self._stream.write(text)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._flush()
        await self._stream.stop()


@dataclass
class Turn:
    role: str
    content: str


class ChatPane(Vertical):
    BINDINGS = bindings_for("chat")
    HELP = """
## Chat
Talk to the deployed model (or any OpenAI-compatible URL under **Settings**).

- **Enter** sends; **ctrl+j** (or alt+enter / shift+enter where the terminal
  sends them) inserts a new line.
- **Esc** stops the answer being generated.
- After each answer: time to first token and tokens per second.
- **ctrl+s** saves the conversation as Markdown; *Copy last answer* in the
  palette copies it (OSC 52, works over ssh).
"""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-settings { margin: 0 1; border-top: none; padding: 0; }
    ChatPane #chat-settings CollapsibleTitle { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    ChatPane #chat-form { grid-size: 2; grid-columns: 16 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    ChatPane #conversation { height: 1fr; padding: 0 1; }
    ChatPane .user-msg { margin: 1 0 0 0; padding: 0 1; background: $boost; text-style: bold; }
    ChatPane .answer { margin: 0; padding: 0 1; }
    ChatPane .answer-stats { color: $text-muted; padding: 0 1; }
    ChatPane .chat-error { color: $error; padding: 0 1; margin-top: 1; }
    ChatPane .chat-error-detail { color: $text-muted; padding: 0 1; }
    ChatPane #chat-empty { color: $text-muted; padding: 1; }
    ChatPane #chat-status { height: 1; padding: 0 1; color: $text-muted; }
    ChatPane PromptArea { margin: 0 1; }
    """

    class AnswerEnded(Message):
        def __init__(self, outcome: str, text: str, finished: Any = None, error: Any = None) -> None:
            super().__init__()
            self.outcome = outcome  # "done" | "stopped" | "failed"
            self.text = text
            self.finished = finished
            self.error = error

    def __init__(self, *, client_factory: Callable[..., Any] | None = None,
                 verify_for: Callable[[str], str | bool] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.client_factory = client_factory
        # How to check the endpoint's TLS certificate, per URL (the app knows the local cloud's CA).
        self.verify_for: Callable[[str], str | bool] = verify_for or (lambda url: True)
        self.turns: list[Turn] = []
        self.streaming = False
        self.last_answer = ""
        self.update_interval = 0.05  # seconds between Markdown updates while streaming
        self.tokens_streamed = 0  # deltas written (benchmark / tests)
        self.chars_streamed = 0
        self._pending_prompt = ""
        self._answer: Markdown | None = None
        self._user_widget: Static | None = None
        self._user_text = ""

    def compose(self) -> ComposeResult:
        with Collapsible(title=self._settings_title(), id="chat-settings", collapsed=True):
            with Grid(id="chat-form"):
                yield Label("Endpoint URL")
                yield Input(placeholder="https://host (or provision, then F9)", id="chat-url", compact=True)
                yield Label("API key")
                yield Input(password=True, placeholder="bearer key", id="chat-key", compact=True)
                yield Label("System prompt")
                yield Input(placeholder="optional", id="chat-system", compact=True)
                yield Label("Temperature")
                yield Input("0.7", type="number", id="chat-temp", compact=True)
                yield Label("Max tokens")
                yield Input("512", type="integer", id="chat-max", compact=True)
        with VerticalScroll(id="conversation"):
            yield Static("No messages yet. Type below and press Enter.", id="chat-empty")
        yield Static("Enter send · ctrl+j new line · Esc stop", id="chat-status")
        yield PromptArea(id="prompt", compact=True)

    def on_mount(self) -> None:
        self.query_one("#conversation", VerticalScroll).anchor()

    # -- settings ------------------------------------------------------------------
    def _value(self, ident: str) -> str:
        return self.query_one(f"#{ident}", Input).value.strip()

    def _settings_title(self, url: str = "", temp: str = "0.7", max_tokens: str = "512") -> str:
        return (f"Settings · {url or 'no endpoint'} · temperature {temp or 'default'}"
                f" · max {max_tokens or 'default'} tokens")

    @on(Input.Changed)
    def _settings_changed(self, event: Input.Changed) -> None:
        event.stop()
        settings = self.query_one("#chat-settings", Collapsible)
        settings.title = self._settings_title(self._value("chat-url"), self._value("chat-temp"),
                                              self._value("chat-max"))

    def set_endpoint(self, url: str, api_key: str | None) -> None:
        self.query_one("#chat-url", Input).value = url
        if api_key is not None:
            self.query_one("#chat-key", Input).value = api_key

    def _params(self) -> tuple[float | None, int | None]:
        try:
            temp = float(self._value("chat-temp")) if self._value("chat-temp") else None
        except ValueError:
            temp = None
        try:
            max_tokens = int(self._value("chat-max")) if self._value("chat-max") else None
        except ValueError:
            max_tokens = None
        return temp, max_tokens

    def messages(self, prompt: str) -> list[dict[str, str]]:
        out = []
        system = self._value("chat-system")
        if system:
            out.append({"role": "system", "content": system})
        out.extend({"role": t.role, "content": t.content} for t in self.turns)
        out.append({"role": "user", "content": prompt})
        return out

    # -- sending -------------------------------------------------------------------
    @on(PromptArea.Submitted)
    async def _submitted(self, event: PromptArea.Submitted) -> None:
        event.stop()
        await self.send(event.text)

    async def send(self, text: str) -> None:
        text = text.strip()
        if not text or self.streaming:
            return
        url = self._value("chat-url")
        conversation = self.query_one("#conversation", VerticalScroll)
        if not url:
            await conversation.mount(Static("✕ No endpoint yet: provision and press F9 (Go to inference endpoint), "
                                            "or type a URL under Settings.", classes="chat-error"))
            return
        prompt = self.query_one(PromptArea)
        self._pending_prompt = prompt.text
        prompt.text = ""
        prompt.set_locked(True)
        self.streaming = True
        self.app.refresh_bindings()
        for old in conversation.query("#chat-empty"):
            await old.remove()
        self._user_text = text
        self._user_widget = Static(text, classes="user-msg", markup=False)
        self._answer = Markdown("", classes="answer")
        await conversation.mount_all([self._user_widget, self._answer])
        conversation.anchor()
        self.query_one("#chat-status", Static).update("Generating… Esc to stop")
        temp, max_tokens = self._params()
        self._stream(url, self._value("chat-key"), self.messages(text), temp, max_tokens, text)

    def _make_client(self, url: str, key: str) -> Any:
        if self.client_factory is not None:
            return self.client_factory(url, key, verify=self.verify_for(url))
        from ...chat.client import ChatClient

        return ChatClient(url, key, verify=self.verify_for(url))

    @work(exclusive=True, group="chat", exit_on_error=False)
    async def _stream(self, url: str, key: str, messages: list[dict[str, str]], temperature: float | None,
                      max_tokens: int | None, prompt_text: str) -> None:
        from ...chat.client import ChatError, Delta, Finished, sanitize

        assert self._answer is not None
        stream = PacedStream(self._answer, self.update_interval)
        parts: list[str] = []
        finished = None
        outcome, error = "done", None
        client = self._make_client(url, key)
        try:
            async with aclosing(client.stream_chat(messages, temperature=temperature,
                                                   max_tokens=max_tokens)) as events:
                async for item in events:
                    if isinstance(item, Delta):
                        clean = sanitize(item.text)
                        if clean:
                            parts.append(clean)
                            self.tokens_streamed += 1
                            self.chars_streamed += len(clean)
                            await stream.write(clean)
                    elif isinstance(item, Finished):
                        finished = item
        except asyncio.CancelledError:
            outcome = "stopped"
            raise
        except ChatError as e:
            outcome, error = "failed", e
        finally:
            await stream.stop()
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                try:
                    await asyncio.shield(aclose())
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
            self.post_message(self.AnswerEnded(outcome, "".join(parts), finished, error))

    @on(AnswerEnded)
    async def _answer_ended(self, event: AnswerEnded) -> None:
        event.stop()
        conversation = self.query_one("#conversation", VerticalScroll)
        prompt = self.query_one(PromptArea)
        user_text = self._user_text
        status = self.query_one("#chat-status", Static)
        if event.outcome == "failed":
            # The turn did not happen: drop it, explain inline, give the prompt back.
            for w in (self._user_widget, self._answer):
                if w is not None:
                    await w.remove()
            err = event.error
            message = explain_chat_error(getattr(err, "message", str(err)), getattr(err, "status", None))
            widgets = [Static(f"✕ {message}", classes="chat-error", markup=False)]
            detail = getattr(err, "detail", None)
            if detail:
                widgets.append(Static(str(detail), classes="chat-error-detail", markup=False))
            await conversation.mount_all(widgets)
            prompt.text = self._pending_prompt
            status.update("Not sent. Enter to try again.")
        else:
            self.turns.append(Turn("user", str(user_text)))
            self.turns.append(Turn("assistant", event.text))
            self.last_answer = event.text
            stats = format_stats(event.finished, event.text) if event.outcome == "done" else \
                f"■ stopped · {len(event.text)} characters kept"
            await conversation.mount(Static(stats, classes="answer-stats"))
            status.update("Enter send · ctrl+j new line · Esc stop")
        self.streaming = False
        self._answer = None
        self._user_widget = None
        prompt.set_locked(False)
        prompt.focus()
        self.app.refresh_bindings()

    # -- actions ---------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.streaming
        return True

    def action_stop(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self.streaming:
            self.workers.cancel_group(self, "chat")

    def action_save(self) -> None:
        self.app.run_command("save_chat")  # type: ignore[attr-defined]

    def transcript_markdown(self) -> str:
        from ...chat.client import Transcript

        transcript = Transcript()
        system = self._value("chat-system")
        if system:
            transcript.add("system", system)
        for turn in self.turns:
            transcript.add(turn.role, turn.content)
        return transcript.to_markdown(f"aitk chat · {self._value('chat-url') or 'no endpoint'}")


def format_stats(finished: Any, text: str) -> str:
    if finished is None:
        return "✓ done"
    parts = []
    ttft = getattr(finished, "ttft_s", None)
    tps = getattr(finished, "tokens_per_s", None)
    usage = getattr(finished, "usage", None) or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else getattr(usage, "completion_tokens", None)
    if ttft is not None:
        parts.append(f"first token {ttft:.2f} s")
    if tps is not None:
        parts.append(f"{tps:.1f} tok/s")
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    reason = getattr(finished, "finish_reason", None)
    if reason:
        parts.append(str(reason))
    return "✓ " + " · ".join(parts) if parts else "✓ done"
