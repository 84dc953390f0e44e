"""Streaming chat client for any OpenAI-compatible endpoint (aitk's server, vLLM, TGI, ...).

Used by ``aitk chat`` and the TUI's chat tab, so it has no Textual, torch or transformers
imports. It turns every failure into a ``ChatError`` whose message is one sentence a user
can act on, and never lets the API key reach an exception, a repr or a log line.

    async with ChatClient("myapp.eastus.azurecontainerapps.io", key) as client:
        async for event in client.stream_chat([{"role": "user", "content": "hi"}]):
            if isinstance(event, Delta): print(event.text, end="")
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..endpoints import tls_verify
from ..errors import AitkError, register_secret
from .keys import is_loopback, key_destination_problem

__all__ = [
    "ASLEEP",
    "ChatClient",
    "ChatError",
    "ChatEvent",
    "Delta",
    "Finished",
    "HealthStatus",
    "ModelInfo",
    "Transcript",
    "Usage",
    "is_loopback",
    "key_destination_problem",
    "normalize_base_url",
    "sanitize",
]

ASLEEP = "the endpoint is asleep or starting; it can take minutes to wake"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=300.0)
_DETAIL_MAX = 500
# What is read of an endpoint's answer before it is judged hostile: a model list or a health
# answer, an error's body (only its first _DETAIL_MAX characters are shown), one SSE line
# (one token's event is a few hundred bytes).
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_SSE_LINE_CHARS = 1024 * 1024
_NEWLINE = re.compile(r"\r\n|\r|\n")


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Delta:
    """A piece of the reply (already passed through ``sanitize`` unless asked otherwise)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The reply is complete. ``tokens_per_s``: from the first token to the last when they came one
    by one; over the whole request when they came in a few bursts."""

    finish_reason: str | None
    usage: Usage | None
    ttft_s: float | None
    tokens_per_s: float | None
    model: str | None = None


ChatEvent = Delta | Finished


@dataclass(frozen=True)
class ModelInfo:
    id: str
    parent: str | None = None
    max_model_len: int | None = None  # the context window, where the server says (vLLM, aitk)


@dataclass(frozen=True)
class HealthStatus:
    """What ``/health`` said, or why it could not say anything. Never carries the key."""

    ok: bool
    state: Literal["ok", "loading", "error", "asleep", "unreachable", "unauthorized"]
    message: str
    http_status: int | None = None
    model: str | None = None
    adapter: str | None = None
    demo: bool = False
    latency_s: float | None = None
    transport: str | None = None  # the transport error's kind when no answer came (ConnectError, ReadTimeout...)
    detail: str | None = None  # what the transport or the body said (scrubbed), under the message


class ChatError(AitkError):
    """One clear sentence (``message``), the server's own words (``detail``) and the HTTP
    status (None when no answer came); both texts pass through ``redact``."""

    def __init__(self, message: str, detail: str | None = None, status: int | None = None):
        super().__init__(message, detail)
        self.status = status

    def __repr__(self) -> str:
        return f"ChatError(message={self.message!r}, detail={self.detail!r}, status={self.status!r})"


# --------------------------------------------------------------------------- text helpers
# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), DCS/PM/APC/SOS strings, other ESC pairs.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# C0 controls except tab and newline, DEL, C1 controls, and bidi overrides/isolates
# (they reorder what the user sees, so model text could disguise itself).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def sanitize(text: str) -> str:
    """Make model text safe to render in a terminal: drop escape sequences and control
    characters (random weights emit BEL, backspace, ESC), keep newlines and tabs."""
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


def normalize_base_url(url: str) -> str:
    """``host`` -> ``https://host/v1``; a full URL keeps its scheme and gains ``/v1`` if missing."""
    url = (url or "").strip()
    if not url or any(c.isspace() for c in url):
        raise ValueError(f"not an endpoint URL: {url!r}")
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) endpoint URL: {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass
class Transcript:
    """The conversation so far, in the shape the API takes."""

    messages: list[dict[str, str]] = field(default_factory=list)

    def add(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})

    def add_user(self, content: str) -> None:
        self.add("user", content)

    def add_assistant(self, content: str) -> None:
        self.add("assistant", content)

    def clear(self) -> None:
        self.messages.clear()

    def __len__(self) -> int:
        return len(self.messages)

    def to_markdown(self, title: str | None = None) -> str:
        lines = [f"# {title}", ""] if title else []
        for m in self.messages:
            lines += [f"**{m['role'].capitalize()}:**", "", sanitize(m["content"]).rstrip(), ""]
        return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- client
@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's own for ``verify=True``, made once: loading the CA bundle took 60-400 ms of the
    event loop for every answer (measured under benchmarks/tui_bench.py, issue 10)."""
    return httpx.create_ssl_context()


def warm_up() -> None:
    """Pay the first client's one-off costs ahead of the first question; safe in a thread.
    Measured: the CA bundle, and the async backend httpcore imports at its first request
    (anyio's), took 100-350 ms of the event loop on the first question."""
    httpx.AsyncClient(verify=default_ssl_context())
    for name in ("httpcore._backends.anyio", "anyio._backends._asyncio", "anyio.streams.tls"):
        with contextlib.suppress(ImportError):  # private names: a later version may move them
            importlib.import_module(name)


class ChatClient:
    def __init__(self, base_url: str, api_key: str | None, *, verify: str | bool | ssl.SSLContext = True,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 allow_insecure_http: bool = False, http: httpx.AsyncClient | None = None):
        """``http``: an httpx client to use (and not close) instead of building one; for the
        key-less health probe of deploy and status (``cloud/health.probe``), so that ``/health``
        is asked and read in this one place."""
        self.base_url = normalize_base_url(base_url)
        self.root_url = self.base_url.removesuffix("/v1")
        self._key = api_key or None
        register_secret(api_key)  # so aitk's shared redaction scrubs it from any text too
        problem = key_destination_problem(self.base_url, allow_insecure_http=allow_insecure_http) if api_key else None
        if problem:
            raise ChatError("the API key was not sent to this endpoint", problem)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        verify = tls_verify(verify)  # a CA bundle path (e.g. the local cloud's own CA) -> an SSL context
        if verify is True:
            verify = default_ssl_context()
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(headers=headers, verify=verify, timeout=timeout, transport=transport)
        self._models: list[ModelInfo] | None = None

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, api_key={'set' if self._key else None})"

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- models -----------------------------------------------------------------
    async def models(self) -> list[ModelInfo]:
        response = await self._request("GET", f"{self.base_url}/models")
        try:
            data = response.json()["data"]
            self._models = [ModelInfo(str(m["id"]), m.get("parent"), _positive_int(m.get("max_model_len")))
                            for m in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise ChatError("the endpoint's model list is not in the OpenAI format",
                            self._scrub(response.text), response.status_code) from exc
        return self._models

    async def list_models(self) -> list[str]:
        return [m.id for m in await self.models()]

    async def default_model(self) -> str:
        """The adapter (the first model with a parent) if there is one, else the first model."""
        return (await self.default_model_info()).id

    async def default_model_info(self, chosen: str | None = None) -> ModelInfo:
        """``chosen`` (a model id the user picked) if the endpoint serves it, else the default."""
        models = self._models if self._models is not None else await self.models()
        if not models:
            raise ChatError("the endpoint serves no models")
        if chosen is not None:
            for m in models:
                if m.id == chosen:
                    return m
            raise ChatError(f"the endpoint no longer serves the model {chosen!r}",
                            f"it serves {', '.join(m.id for m in models)}; choose another (palette: Choose the chat's model)")
        return next((m for m in models if m.parent), models[0])

    # -- health -----------------------------------------------------------------
    async def health(self, *, timeout: float | None = None) -> HealthStatus:
        """``timeout``: for this probe only (waking an endpoint probes often and briefly)."""
        started = time.perf_counter()
        try:
            response = await self._capped("GET", f"{self.root_url}/health", MAX_ERROR_BODY_BYTES,
                                          **({"timeout": timeout} if timeout is not None else {}))
        except httpx.HTTPError as exc:
            error = self._transport_error(exc)
            state = "asleep" if error.message == ASLEEP else "unreachable"
            return HealthStatus(False, state, error.message, latency_s=time.perf_counter() - started,
                                transport=type(exc).__name__, detail=error.detail)
        latency = time.perf_counter() - started
        body = _json_or_none(response)
        body = body if isinstance(body, dict) else {}
        status = response.status_code
        if status == 200:
            return HealthStatus(True, "ok", "ready", status, body.get("model"), body.get("adapter"),
                                bool(body.get("demo", False)), latency)
        if status == 404:  # a server without /health (e.g. OpenAI itself): ask for its models
            try:
                await self.models()
            except ChatError as exc:
                return HealthStatus(False, _health_state(exc.status), exc.message, exc.status, latency_s=latency)
            return HealthStatus(True, "ok", "ready", status, latency_s=latency)
        if status == 503 and body.get("status") == "loading":
            return HealthStatus(False, "loading", "the model is loading", status, latency_s=latency)
        if status == 503 and body.get("status") == "error":
            detail = self._scrub(str(body.get("error", "")))
            return HealthStatus(False, "error", f"the model failed to load: {detail}", status, latency_s=latency)
        error = self._status_error(response)
        return HealthStatus(False, _health_state(status), error.message, status, latency_s=latency,
                            detail=error.detail)

    # -- chat -------------------------------------------------------------------
    async def stream_chat(
        self,
        messages: Iterable[Mapping[str, str]] | Transcript,
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        system: str | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        sanitize_output: bool = True,
    ) -> AsyncIterator[ChatEvent]:
        """Yield ``Delta`` pieces then one ``Finished``; raise ``ChatError`` on any failure."""
        history = messages.messages if isinstance(messages, Transcript) else messages
        payload_messages = [{"role": m["role"], "content": m["content"]} for m in history]
        if system and not (payload_messages and payload_messages[0]["role"] == "system"):
            payload_messages.insert(0, {"role": "system", "content": system})
        body: dict[str, Any] = {
            "model": model or await self.default_model(),
            "messages": payload_messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        optional = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p, "stop": stop, "seed": seed}
        body.update({k: v for k, v in optional.items() if v is not None})

        started = time.perf_counter()
        first_at = last_at = None
        pieces = 0
        finish_reason: str | None = None
        usage: Usage | None = None
        served_model: str | None = None
        done = False
        try:
            async with self._http.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise self._status_error(await _read_capped(response, MAX_ERROR_BODY_BYTES))
                async for line in _lines(response, MAX_SSE_LINE_CHARS):
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    event = _parse_event(data)
                    if "error" in event:
                        err = event["error"] if isinstance(event["error"], dict) else {"message": event["error"]}
                        raise ChatError("the endpoint failed while answering",
                                        self._scrub(str(err.get("message", ""))), _int_or_none(err.get("code")))
                    served_model = event.get("model") or served_model
                    if event.get("usage"):
                        usage = _usage(event["usage"])
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            now = time.perf_counter()
                            first_at = first_at or now
                            last_at = now
                            pieces += 1
                            yield Delta(sanitize(text) if sanitize_output else text)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if not done and finish_reason is None:
            raise ChatError("the stream ended before the reply was complete (connection lost?)")
        ttft = first_at - started if first_at else None
        tokens = usage.completion_tokens if usage else pieces
        rate = None
        if first_at and last_at and last_at > first_at and tokens > 1 and pieces * 2 >= tokens:
            # Streamed token by token (a piece holds one or two): the decode rate.
            rate = (tokens - 1) / (last_at - first_at)
        elif last_at and tokens:
            # In a few bursts (a buffering proxy, many tokens a chunk): the gap between the first
            # and the last burst says nothing about decoding, so the rate is over the request.
            rate = tokens / max(last_at - started, 1e-6)
        yield Finished(finish_reason, usage, ttft, rate, served_model)

    # -- errors -----------------------------------------------------------------
    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._capped(method, url, MAX_BODY_BYTES, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code != 200:
            raise self._status_error(response)
        if response.extensions.get("aitk_truncated"):
            raise ChatError(f"the endpoint's answer is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB", None,
                            response.status_code)
        return response

    async def _capped(self, method: str, url: str, limit: int, **kwargs: Any) -> httpx.Response:
        """The answer with its body read only up to ``limit`` bytes (an error's, to
        ``MAX_ERROR_BODY_BYTES``): a hostile endpoint's endless body is never held whole."""
        async with self._http.stream(method, url, **kwargs) as response:
            return await _read_capped(response, limit if response.status_code == 200 else min(limit, MAX_ERROR_BODY_BYTES))

    def _scrub(self, text: str) -> str:
        text = sanitize(text or "")[:_DETAIL_MAX]
        return text.replace(self._key, "***") if self._key else text

    def _status_error(self, response: httpx.Response) -> ChatError:
        status = response.status_code
        body = _json_or_none(response)
        detail = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            detail = body["error"].get("message")
        elif isinstance(body, dict):
            detail = body.get("error") or body.get("detail") or body.get("message")
        if detail is None and response.text:
            detail = response.text
        detail = self._scrub(str(detail)) if detail else None
        if status in (401, 403):
            message = ("the endpoint refused the API key" if self._key
                       else "the endpoint requires an API key and none is set")
        elif status == 429:
            retry = _retry_after(response.headers.get("retry-after"))
            message = f"the endpoint is busy, retry in {retry} s" if retry else "the endpoint is busy, retry shortly"
        elif status in (502, 503, 504):
            message = ASLEEP
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                code = body["error"].get("code")
                if code == "load_failed":
                    message = "the endpoint's model failed to load"
                elif code == "model_loading":
                    message = "the endpoint is starting: its model is still loading"
        elif status == 404:
            message = "the endpoint does not know that model or path (is the URL right?)"
        elif status == 413:
            message = "the conversation is too large for the endpoint"
        elif status == 400:
            message = "the endpoint rejected the request"
        elif status >= 500:
            message = f"the endpoint failed (HTTP {status})"
        else:
            message = f"unexpected answer from the endpoint (HTTP {status})"
        return ChatError(message, detail, status)

    def _transport_error(self, exc: httpx.HTTPError) -> ChatError:
        text = self._scrub(str(exc))
        if isinstance(exc, httpx.ConnectError):
            if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
                return ChatError("the endpoint's TLS certificate is not trusted", text)
            return ChatError(ASLEEP, text or "connection refused")
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return ChatError(ASLEEP, text or "connect timeout")
        if isinstance(exc, httpx.ReadTimeout):
            return ChatError("the endpoint stopped answering (read timeout)", text)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return ChatError("the connection to the endpoint broke off", text)
        return ChatError("could not talk to the endpoint", text or type(exc).__name__)


async def _read_capped(response: httpx.Response, limit: int) -> httpx.Response:
    """A copy of a streamed ``response`` holding at most ``limit`` bytes of its (decoded) body;
    ``extensions["aitk_truncated"]`` says whether more was left unread."""
    body = bytearray()
    truncated = False
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            del body[limit:]
            truncated = True
            break
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=response.request,
                          extensions={"aitk_truncated": truncated})


async def _lines(response: httpx.Response, limit: int) -> AsyncIterator[str]:
    """The stream's lines (CR, LF or CRLF), refusing one longer than ``limit`` characters
    instead of buffering it whole (httpx's ``aiter_lines`` keeps a line until its end)."""
    pending = ""
    async for text in response.aiter_text():
        pending += text
        *lines, pending = _NEWLINE.split(pending)
        for line in lines:
            yield line
        if len(pending) > limit:
            raise ChatError(f"the endpoint sent a stream line longer than {limit // 1024} KiB; the answer was "
                            "abandoned", sanitize(pending[:_DETAIL_MAX]))
    if pending:
        yield pending


def _health_state(status: int | None) -> Literal["asleep", "unauthorized", "error", "unreachable"]:
    if status in (401, 403):
        return "unauthorized"
    if status in (502, 503, 504):
        return "asleep"
    return "error" if status else "unreachable"


def _parse_event(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError:
        raise ChatError("the endpoint sent a malformed stream event", sanitize(data)[:_DETAIL_MAX]) from None
    if not isinstance(event, dict):
        raise ChatError("the endpoint sent a malformed stream event", sanitize(data)[:_DETAIL_MAX])
    return event


def _usage(raw: Any) -> Usage | None:
    try:
        p, c = int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0))
        return Usage(p, c, int(raw.get("total_tokens", p + c)))
    except (AttributeError, TypeError, ValueError):
        return None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(value: str | None) -> int | None:
    try:
        return max(0, int(float(value))) if value else None
    except ValueError:
        return None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 40 else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None
