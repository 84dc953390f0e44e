"""The Chat tab: stream answers from the inference endpoint or any OpenAI-compatible URL.

Answers stream through ``PacedStream`` into a ``StreamedAnswer`` (answer.py) in a container
anchored to the bottom; while an answer streams the next message can be typed (Enter waits
for the answer to end), and a failed message is given back to the prompt; Esc
stops generating; errors (401, 429, an endpoint still waking) are explained inline. Model text is sanitized
before it is rendered. The conversation lives for the session and saves as Markdown.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.content import Content
from textual.containers import Grid, Vertical, VerticalScroll
from textual.widgets import Collapsible, Label, Markdown, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from ...chat.context import ContextBudget, parse_context_error
from ...errors import AitkError
from ..commands import bindings_for
from .answer import PacedStream, StreamedAnswer
from .chat_text import explain_chat_error, format_stats, stop_stream, warm_client
from .inputs import Input
from .prompt import PromptArea


IDLE_STATUS = "Enter send · ctrl+j new line · Esc stop"


@dataclass
class Turn:
    role: str
    content: str


@dataclass(eq=False)
class _Answer:
    """One request from Enter until the pane has given the prompt back.

    The worker only records what happened here; the pane closes the answer once the
    worker has finished, however it finished (``_end``), so an Esc that lands while the
    worker is cleaning up, or before it ever ran, cannot leave the prompt locked.
    """

    user_text: str
    typed: str  # the prompt as typed, given back when the request fails
    user_widget: Static
    markdown: Markdown
    url: str
    parts: list[str] = field(default_factory=list)
    sent: list[dict[str, str]] = field(default_factory=list)  # the messages of the last request
    finished: Any = None
    error: Any = None
    stream: Any = None
    stream_stopped: bool = False
    left_out: int = 0  # earliest exchanges the last request left out
    worker: Worker | None = None
    ended: bool = False
    waking: Static | None = None  # "waking the replica…" while a sleeping endpoint starts
    waking_now: bool = False  # the request has not gone yet: Esc now gives the message back


class ChatPane(Vertical):
    BINDINGS = bindings_for("chat")
    HELP = """
## Chat
Talk to the deployed model (or any OpenAI-compatible URL under **Settings**).

- **Enter** sends; **ctrl+j** (or alt+enter / shift+enter where the terminal
  sends them) inserts a new line.
- **Esc** stops the answer being generated.
- **ctrl+n** (or *New conversation* in the palette) starts afresh. When the
  conversation outgrows the model's context, the earliest exchanges are left
  out of what is sent, and a notice says so.
- After each answer: time to first token and tokens per second.
- **ctrl+s** saves the conversation as Markdown; *Copy last answer* in the
  palette copies it (OSC 52, works over ssh).
- *Compare models* (palette) sends the same question to two of the endpoint's
  models and streams both answers side by side.
"""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-settings { margin: 0 1; border-top: none; padding: 0; }
    ChatPane #chat-settings CollapsibleTitle { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    ChatPane #chat-form { grid-size: 2; grid-columns: 16 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    /* A steady gutter: the scrollbar that appears as the answer outgrows the pane would
       narrow it, and a new width redraws every line of the answer so far (answer.py). */
    ChatPane #conversation { height: 1fr; padding: 0 1; scrollbar-gutter: stable; }
    ChatPane .user-msg { margin: 1 0 0 0; padding: 0 1; background: $boost; text-style: bold; }
    ChatPane .answer { margin: 0; padding: 0 1; }
    ChatPane .answer-stats { color: $text-muted; padding: 0 1; }
    ChatPane .chat-error { color: $error; padding: 0 1; margin-top: 1; }
    ChatPane .chat-error-detail { color: $text-muted; padding: 0 1; }
    ChatPane .chat-notice { color: $warning; padding: 0 1; margin-top: 1; }
    ChatPane .chat-waking { color: $text-muted; padding: 0 1; }
    ChatPane #chat-empty { color: $text-muted; padding: 1; }
    ChatPane #chat-status { height: 1; padding: 0 1; color: $text-muted; }
    ChatPane PromptArea { margin: 0 1; }
    """

    def __init__(self, *, client_factory: Callable[..., Any] | None = None,
                 verify_for: Callable[[str], str | bool] | None = None,
                 replica_logs: Callable[[str], Callable[[], Any] | None] | None = None,
                 platform_check: Callable[[str], Callable[[], Any] | None] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.client_factory = client_factory
        # The replica log behind a URL (the app's own endpoint only): its latest line is shown while waking.
        self.replica_logs = replica_logs
        # Whether the platform says no replica can come (a failed revision): waking then stops, saying why.
        self.platform_check = platform_check
        # How to check the endpoint's TLS certificate, per URL (the app knows the local cloud's CA).
        self.verify_for: Callable[[str], str | bool] = verify_for or (lambda url: True)
        self.turns: list[Turn] = []
        self.model: str | None = None  # picked with "Choose the chat's model"; None: the endpoint's default
        self.streaming = False
        self.last_answer = ""
        self.update_interval = 0.05  # seconds between Markdown updates while streaming
        self.tokens_streamed = 0  # deltas written (benchmark / tests)
        self.chars_streamed = 0
        self._answer: _Answer | None = None
        self._budgets: dict[str, ContextBudget] = {}  # per endpoint URL: its context and token ratio
        self._left_out = 0  # earliest exchanges no longer sent (monotonic within a conversation)
        self._new_after_end = False

    def compose(self) -> ComposeResult:
        with Collapsible(title=self._settings_title(), id="chat-settings", collapsed=True):
            with Grid(id="chat-form"):
                yield Label("Endpoint URL", markup=False)
                yield Input(placeholder="https://host (or provision, then F9)", id="chat-url", compact=True)
                yield Label("API key", markup=False)
                yield Input(password=True, placeholder="bearer key", id="chat-key", compact=True)
                yield Label("System prompt", markup=False)
                yield Input(placeholder="optional", id="chat-system", compact=True)
                yield Label("Temperature", markup=False)
                yield Input("0.7", type="number", id="chat-temp", compact=True)
                yield Label("Max tokens", markup=False)
                yield Input("512", type="integer", id="chat-max", compact=True)
        with VerticalScroll(id="conversation"):
            yield Static("No messages yet. Type below and press Enter.", id="chat-empty", markup=False)
        yield Static(IDLE_STATUS, id="chat-status", markup=False)
        yield PromptArea(id="prompt", compact=True)

    def on_mount(self) -> None:
        self.query_one("#conversation", VerticalScroll).anchor()
        if self.client_factory is None:
            # The first client's one-off costs, off the event loop, before the first question.
            self.run_worker(warm_client, thread=True, group="warm-client", exit_on_error=False)

    # -- settings ------------------------------------------------------------------
    def _value(self, ident: str) -> str:
        return self.query_one(f"#{ident}", Input).value.strip()

    def _settings_title(self, url: str = "", temp: str = "0.7", max_tokens: str = "512") -> Content:
        # Content, not str: a Collapsible reads a str title as markup, and the URL is typed or read.
        model = f" · model {self.model}" if self.model else ""
        return Content(f"Settings · {url or 'no endpoint'}{model} · temperature {temp or 'default'}"
                       f" · max {max_tokens or 'default'} tokens")

    @on(Input.Changed)
    def _settings_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._refresh_settings_title()

    def _refresh_settings_title(self) -> None:
        settings = self.query_one("#chat-settings", Collapsible)
        settings.title = self._settings_title(self._value("chat-url"), self._value("chat-temp"),
                                              self._value("chat-max"))

    def endpoint_problem(self) -> str | None:
        """Why nothing can be sent to the endpoint now, as one sentence (None: it can)."""
        url, key = self._value("chat-url"), self._value("chat-key")
        if not url:
            return "No endpoint yet: open the chat (F9) or type a URL under its Settings."
        problem = self.key_problem(url, key)
        return f"The API key was not sent: {problem}." if problem else None

    async def endpoint_models(self) -> list[str]:
        """The ids the endpoint lists at /v1/models; AitkError says why not in one sentence."""
        from ...chat.client import ChatError

        problem = self.endpoint_problem()
        if problem:
            raise AitkError(problem)
        client = self.make_client(self._value("chat-url"), self._value("chat-key"))
        try:
            return await client.list_models()
        except ChatError as e:
            raise AitkError(f"Could not list the endpoint's models: {e.message}", e.detail) from None
        finally:
            await client.aclose()

    def set_model(self, model: str | None) -> None:
        """The model the next messages go to (None: whatever the endpoint serves by default)."""
        self.model = model
        self._refresh_settings_title()

    def endpoint_url(self) -> str:
        """The URL the next message goes to (as typed or set under Settings)."""
        return self._value("chat-url")

    def api_key(self) -> str:
        """The key the next message sends (as typed or set under Settings)."""
        return self._value("chat-key")

    def set_endpoint(self, url: str, api_key: str | None) -> None:
        self.query_one("#chat-url", Input).value = url
        if api_key is not None:
            self.query_one("#chat-key", Input).value = api_key
            self._key_bound_to = (api_key, url)  # the app's key goes to the app's endpoint only

    def key_problem(self, url: str, key: str) -> str | None:
        """Why ``key`` must not go to ``url``: plain http off this machine, or the app's key elsewhere."""
        from ...chat.keys import is_loopback, key_destination_problem

        if not key:
            return None
        bound = getattr(self, "_key_bound_to", None)
        if bound is not None and bound[0] == key and bound[1] != url:
            return f"the app's API key is sent only to its own endpoint ({bound[1]}); type the key of {url} instead"
        # A URL typed into Settings is an explicit choice: loopback http is allowed, nothing else over http.
        return key_destination_problem(url, allow_insecure_http=is_loopback(url))

    def sampling(self) -> tuple[float | None, int | None]:
        """The temperature and max tokens typed under Settings (None: the endpoint's default)."""
        try:
            temp = float(self._value("chat-temp")) if self._value("chat-temp") else None
        except ValueError:
            temp = None
        try:
            max_tokens = int(self._value("chat-max")) if self._value("chat-max") else None
        except ValueError:
            max_tokens = None
        return temp, max_tokens

    def system_messages(self) -> list[dict[str, str]]:
        """The system prompt typed under Settings, as the request's first message (or none)."""
        system = self._value("chat-system")
        return [{"role": "system", "content": system}] if system else []

    def _pairs(self) -> list[list[dict[str, str]]]:
        """The exchanges still sent with each request, oldest first."""
        turns = [{"role": t.role, "content": t.content} for t in self.turns]
        return [turns[i:i + 2] for i in range(0, len(turns), 2)][self._left_out:]

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """What a request would carry now, before it is fitted to the model's context."""
        history = [m for pair in self._pairs() for m in pair]
        return self.system_messages() + history + [{"role": "user", "content": prompt}]

    def budget(self, url: str) -> ContextBudget:
        return self._budgets.setdefault(url, ContextBudget())

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
                                            "or type a URL under Settings.", classes="chat-error", markup=False))
            return
        problem = self.key_problem(url, self._value("chat-key"))
        if problem:
            await conversation.mount(Static(f"✕ The API key was not sent: {problem}.", classes="chat-error",
                                            markup=False))
            return
        prompt = self.query_one(PromptArea)
        typed = prompt.text
        prompt.text = ""
        prompt.set_busy(True)
        self.streaming = True
        self.app.refresh_bindings()
        for old in conversation.query("#chat-empty"):
            await old.remove()
        answer = _Answer(text, typed, Static(text, classes="user-msg", markup=False), StreamedAnswer(classes="answer"),
                         url)
        self._answer = answer
        await conversation.mount_all([answer.user_widget, answer.markdown])
        conversation.anchor()
        self.query_one("#chat-status", Static).update("Generating… Esc to stop")
        temp, max_tokens = self.sampling()
        answer.worker = self._stream(answer, self._value("chat-key"), temp, max_tokens)

    def make_client(self, url: str, key: str) -> Any:
        if self.client_factory is not None:
            return self.client_factory(url, key, verify=self.verify_for(url))
        from ...chat.client import ChatClient
        from ...chat.keys import is_loopback

        return ChatClient(url, key, verify=self.verify_for(url), allow_insecure_http=is_loopback(url))

    @work(exclusive=True, group="chat", exit_on_error=False)
    async def _stream(self, answer: _Answer, key: str, temperature: float | None, max_tokens: int | None) -> None:
        """Stream one answer into ``answer``; the pane closes it when this worker has finished."""
        from ...chat.client import ChatError

        answer.stream = PacedStream(answer.markdown, self.update_interval)
        budget = self.budget(answer.url)
        client = self.make_client(answer.url, key)
        try:
            await self._wake(client, answer)
            model = self.model
            describe = getattr(client, "default_model_info", None)
            if describe is not None:  # the context limit, from /v1/models (max_model_len)
                info = await describe(self.model)
                model = info.id
                budget.learn_limit(info.max_model_len)
            user = {"role": "user", "content": answer.user_text}
            at_least = 0
            while True:
                pairs = self._pairs()
                fitted = budget.fit(self.system_messages(), pairs, user, max_tokens, at_least=at_least)
                answer.sent, answer.left_out = fitted.messages, fitted.dropped_pairs
                try:
                    await self._receive(client, answer, model, temperature, max_tokens)
                    break
                except ChatError as e:
                    # Our estimate was short: the 400 names the limit and the true count. Learn
                    # both and leave out more, unless nothing is left to leave out.
                    told = parse_context_error(e.detail) if e.status == 400 else None
                    if told is None or answer.parts or fitted.dropped_pairs >= len(pairs):
                        raise
                    budget.learn_limit(told[0])
                    if told[1]:
                        budget.learn_usage(fitted.messages, told[1])
                    at_least = fitted.dropped_pairs + 1
            usage = getattr(answer.finished, "usage", None)
            budget.learn_usage(answer.sent, getattr(usage, "prompt_tokens", None))
        except ChatError as e:
            answer.error = e
        finally:
            try:
                answer.stream_stopped = await stop_stream(answer.stream)
            finally:
                aclose = getattr(client, "aclose", None)
                if aclose is not None:
                    try:
                        await asyncio.shield(aclose())
                    except Exception:  # noqa: BLE001 - closing is best effort
                        pass

    async def _wake(self, client: Any, answer: _Answer) -> None:
        """Before sending: if the endpoint sleeps or starts, show it waking until /health is ok."""
        from ...chat.wake import wake
        from ...events import Waking

        logs = self.replica_logs(answer.url) if self.replica_logs is not None else None
        platform = self.platform_check(answer.url) if self.platform_check is not None else None
        answer.waking_now = True  # left set when Esc cancels this: _end then gives the message back
        async with aclosing(wake(client, logs=logs, platform=platform)) as events:
            async for event in events:
                if isinstance(event, Waking):
                    text = f"◌ Waking the replica… {event.elapsed_s:.0f} s"
                    if event.log_line:
                        text += f"\n  {event.log_line}"
                    status = "Waking the replica… Esc to cancel"
                else:
                    text = f"✓ The replica is awake after {event.elapsed_s:.0f} s"
                    status = "Generating… Esc to stop"
                if answer.waking is None:
                    answer.waking = Static(text, classes="chat-waking", markup=False)
                    await self.query_one("#conversation", VerticalScroll).mount(answer.waking, before=answer.markdown)
                else:
                    answer.waking.update(text)
                self.query_one("#chat-status", Static).update(status)
        answer.waking_now = False

    async def _receive(self, client: Any, answer: _Answer, model: str | None, temperature: float | None,
                       max_tokens: int | None) -> None:
        from ...chat.client import Delta, Finished, sanitize

        extra = {"model": model} if model else {}
        async with aclosing(client.stream_chat(answer.sent, temperature=temperature, max_tokens=max_tokens,
                                               **extra)) as events:
            async for item in events:
                if isinstance(item, Delta):
                    clean = sanitize(item.text)
                    if clean:
                        answer.parts.append(clean)
                        self.tokens_streamed += 1
                        self.chars_streamed += len(clean)
                        await answer.stream.write(clean)
                elif isinstance(item, Finished):
                    answer.finished = item

    @on(Worker.StateChanged)
    async def _worker_changed(self, event: Worker.StateChanged) -> None:
        answer = self._answer
        if answer is None or event.worker is not answer.worker:
            return
        event.stop()
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            await self._end(answer, event.state, event.worker.error)

    async def _reap(self, answer: _Answer) -> None:
        """After Esc: wait for the worker, then close the answer even if it never got to run."""
        worker = answer.worker
        assert worker is not None
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):
            pass
        state = worker.state if worker.state in (WorkerState.SUCCESS, WorkerState.ERROR) else WorkerState.CANCELLED
        await self._end(answer, state, worker.error)

    async def _end(self, answer: _Answer, state: WorkerState, error: BaseException | None) -> None:
        """Give the prompt back, whatever ended the answer; idempotent."""
        if answer.ended:
            return
        answer.ended = True
        from ...chat.client import ChatError

        if not answer.stream_stopped and answer.stream is not None:
            await stop_stream(answer.stream)  # cancelled mid-cleanup: finish what the worker could not
        if answer.error is None and state == WorkerState.ERROR:
            answer.error = ChatError("the chat failed unexpectedly", f"{type(error).__name__}: {error}")
        # Esc while "waking the replica" was on screen: the message never went, so it comes back.
        # (Esc during the first quick probe stays a plain stop, as before there was a probe.)
        cancelled_waking = (answer.waking_now and answer.waking is not None and answer.error is None
                            and not answer.parts)
        text = "".join(answer.parts)
        conversation = self.query_one("#conversation", VerticalScroll)
        prompt = self.query_one(PromptArea)
        status = self.query_one("#chat-status", Static)
        if answer.error is not None or cancelled_waking:
            # The turn did not happen: drop it, explain inline, give the prompt back selected,
            # so Enter sends it again and typing replaces it (never appends to it). If the next
            # message was typed meanwhile, that text stays, and the failed one stays on screen.
            typed_ahead = bool(prompt.text.strip())
            for w in (None if typed_ahead else answer.user_widget, answer.markdown, answer.waking):
                if w is not None:
                    await w.remove()
            if cancelled_waking:
                widgets = [Static("■ Not sent: cancelled while the replica was waking (it goes on starting).",
                                  classes="chat-notice", markup=False)]
            else:
                err = answer.error
                message = explain_chat_error(getattr(err, "message", str(err)), getattr(err, "status", None))
                widgets = [Static(f"✕ {message}", classes="chat-error", markup=False)]
                detail = getattr(err, "detail", None)
                if detail:
                    widgets.append(Static(str(detail), classes="chat-error-detail", markup=False))
            await conversation.mount_all(widgets)
            if typed_ahead:
                status.update("Not sent (the message above). What you typed since is kept.")
            else:
                prompt.text = answer.typed
                prompt.select_all()
                status.update("Not sent. Enter sends it again; typing replaces it.")
        else:
            if answer.markdown.source != text:
                await answer.markdown.update(text)
            done = answer.finished is not None or state == WorkerState.SUCCESS
            if answer.left_out:
                self._left_out += answer.left_out
                await conversation.mount(Static(self._left_out_notice(answer.url), classes="chat-notice",
                                                markup=False), before=answer.user_widget)
            self.turns.append(Turn("user", answer.user_text))
            self.turns.append(Turn("assistant", text))
            self.last_answer = text
            stats = format_stats(answer.finished, text) if done else f"■ stopped · {len(text)} characters kept"
            await conversation.mount(Static(stats, classes="answer-stats", markup=False))
            status.update(IDLE_STATUS)
        if self._answer is answer:
            self._answer = None
        self.streaming = False
        prompt.set_busy(False)
        prompt.focus()
        self.app.refresh_bindings()
        if self._new_after_end:
            await self.new_conversation()

    def _left_out_notice(self, url: str) -> str:
        n = self._left_out
        limit = self.budget(url).limit
        fit = f"the model's {limit}-token context" if limit else "the model's context"
        what = "earliest exchange" if n == 1 else f"{n} earliest exchanges"
        return (f"↑ {what[0].upper()}{what[1:]} left out to fit {fit}; the model no longer sees "
                f"{'it' if n == 1 else 'them'} (ctrl+n starts a new conversation).")

    async def new_conversation(self) -> None:
        """Forget the turns (the model starts afresh); an answer being generated is stopped first."""
        if self.streaming:
            self._new_after_end = True
            self.stop()
            return
        self._new_after_end = False
        self.turns.clear()
        self.last_answer = ""
        self._left_out = 0
        conversation = self.query_one("#conversation", VerticalScroll)
        await conversation.remove_children()
        await conversation.mount(Static("New conversation: the model no longer sees the earlier turns. "
                                        "Type below and press Enter.", id="chat-empty", markup=False))
        self.query_one("#chat-status", Static).update(IDLE_STATUS)
        self.query_one(PromptArea).focus()

    # -- actions ---------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.streaming
        return True

    def action_stop(self) -> None:
        self.stop()

    def stop(self) -> None:
        answer = self._answer
        if not self.streaming or answer is None or answer.worker is None:
            return
        answer.worker.cancel()
        self.run_worker(self._reap(answer), group="chat-reap", exit_on_error=False)

    def transcript_markdown(self) -> str:
        from ...chat.client import Transcript

        transcript = Transcript()
        system = self._value("chat-system")
        if system:
            transcript.add("system", system)
        for turn in self.turns:
            transcript.add(turn.role, turn.content)
        return transcript.to_markdown(f"aitk chat · {self._value('chat-url') or 'no endpoint'}")
