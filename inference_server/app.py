"""The HTTP face of the server: a FastAPI app factory speaking OpenAI chat completions.

Owns routes, auth, limits, error shapes, SSE framing, access logs and metrics; the model
and the batching live in ``engine`` (imported without torch, which loads in the
background so ``/health`` answers from the first second).

Documented behaviours:
- Auth: with a key configured, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer``;
  ``/health`` stays open for the platform's probes.
- Limits: body > ``max_body_bytes`` -> 413; more than ``max_messages`` -> 400; a prompt
  that does not fit the context -> 400 naming both numbers; ``max_tokens`` above
  ``max_tokens_cap`` -> 400 naming the cap; a ``max_tokens`` that merely overruns the
  context is clamped (the reply then ends with ``finish_reason: "length"``).
- Timeout: ``request_timeout`` counts from arrival. A request that is generating when it
  expires ends normally with ``finish_reason: "length"`` (the text so far is kept); one
  still queued gets 503 with Retry-After (in-stream: an error event).
- Queue: more than ``max_queue`` waiting -> 429 with Retry-After.
- A client that disconnects cancels its generation at the next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import schemas
from .engine import Engine, Finished, LoadError, QueueFull, RequestHandle, SamplingParams, load_model
from .limits import ENCODE_THREADS, prompt_char_limit
from .metrics import Metrics
from .page import PATHS as PAGE_PATHS
from .page import add_page_routes
from .settings import ConfigError, ServerSettings, check_security, is_loopback

log = logging.getLogger("inference_server")
access_log = logging.getLogger("inference_server.access")

INLINE_ENCODE_BYTES = 32 * 1024
ROUTES = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", *PAGE_PATHS)
Loader = Callable[[ServerSettings], Any]


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = schemas.error_body(self.message, self.type, self.code, self.param)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _BodyTooLarge(Exception):
    pass


class ServerState:
    """Loading -> ready | failed; the engine exists only once ready."""

    def __init__(self) -> None:
        self.status = "loading"
        self.error: str | None = None
        self.loaded: Any = None
        self.engine: Engine | None = None
        self.prompt_char_limit = 0  # set with the model: longer prompts are refused untokenized
        self.started = time.time()

    def require_engine(self) -> Engine:
        if self.engine is not None:
            return self.engine
        if self.status == "failed":
            raise APIError(503, f"the model failed to load: {self.error}", "service_unavailable", "load_failed")
        raise APIError(503, "the model is still loading; retry shortly", "service_unavailable",
                       "model_loading", headers={"Retry-After": "5"})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


async def _wait_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class EventStream(Response):
    """SSE response that watches for the client leaving and calls ``on_close`` either way.

    Starlette's StreamingResponse only notices a disconnect when a write fails (ASGI spec
    2.4); listening to ``receive`` frees the generation slot even between tokens.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[], None], headers: dict[str, str]):
        self.status_code = 200
        self.background = None
        # Built by hand: Response.__init__ would declare "content-length: 0" for no body.
        all_headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                       "x-accel-buffering": "no", **{k.lower(): v for k, v in headers.items()}}
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in all_headers.items()]
        self.events, self.on_close = events, on_close

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            async with contextlib.aclosing(self.events) as events:
                async for data in events:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        pump_task = asyncio.ensure_future(pump())
        watch_task = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.on_close()
            for task in (pump_task, watch_task):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump_task
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task


def create_app(settings: ServerSettings, *, loader: Loader | None = None,
               on_load_failure: Callable[[str], None] | None = None) -> FastAPI:
    """Build the app. ``loader(settings) -> LoadedModel`` runs in a background thread at
    start-up (default: ``engine.load_model``); ``on_load_failure(message)`` is told if it fails.
    Raises ConfigError if the settings are unsafe to serve (see ``check_security``)."""
    check_security(settings)
    state = ServerState()
    metrics = Metrics()
    metrics.gauge("aitk_queue_depth", "Requests waiting for a generation slot.",
                  lambda: state.engine.queue_depth if state.engine else 0)
    metrics.gauge("aitk_active_requests", "Requests generating now.",
                  lambda: state.engine.active if state.engine else 0)
    metrics.gauge("aitk_model_ready", "1 once the model is loaded.", lambda: 1 if state.engine else 0)
    expected_key = settings.key_bytes()
    load = loader or load_model
    encode_slots: list[anyio.CapacityLimiter] = []  # threads that tokenize long prompts (limits.py)

    def load_in_background() -> None:
        try:
            loaded = load(settings)
            engine = Engine(loaded, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
                            max_prefill_tokens=settings.max_prefill_tokens, metrics=metrics,
                            min_step_interval=settings.min_step_interval,
                            prefill_chunk=settings.prefill_chunk or None,
                            prefix_cache_tokens=settings.prefix_cache_tokens)
            engine.start()
            state.prompt_char_limit = prompt_char_limit(loaded.tokenizer, loaded.context_len)
            state.loaded, state.engine, state.status = loaded, engine, "ready"
            log.info("ready: serving %s (load took %.1f s)", ", ".join(loaded.served), time.time() - state.started)
        except Exception as exc:
            message = str(exc) if isinstance(exc, (LoadError, ConfigError)) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (LoadError, ConfigError)):
                log.exception("model load failed")
            log.error("model load failed: %s", message)
            state.error, state.status = message, "failed"
            if on_load_failure is not None:
                on_load_failure(message)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load_in_background, name="aitk-loader", daemon=True).start()
        yield
        if state.engine is not None:
            await anyio.to_thread.run_sync(state.engine.stop)

    app = FastAPI(title="aitk inference server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = state
    app.state.metrics = metrics

    # ------------------------------------------------------------------ middleware
    def authorized(scope) -> bool:
        if expected_key is None:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected_key)
        return False

    # Without a key on loopback, the address is the only guard, and a web page in the user's
    # browser can reach it: by DNS rebinding (its own name resolving to 127.0.0.1) or by a
    # cross-origin "simple" POST (text/plain needs no CORS preflight). So such a server answers
    # only requests addressed to a loopback name, and takes request bodies only as JSON (which
    # a cross-origin page cannot send without a preflight this server never grants).
    open_loopback = expected_key is None and is_loopback(settings.host)

    def refused_as_unguarded(scope) -> APIError | None:
        if not open_loopback:
            return None
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        if host.startswith("["):  # [::1]:port
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if not name or not is_loopback(name):
            return APIError(403, "This server has no API key, so it answers only requests addressed to "
                            "localhost or a loopback address.", "permission_error", "host_not_allowed")
        if scope["method"] in ("POST", "PUT", "PATCH"):
            ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if ctype != b"application/json":
                return APIError(415, "Request bodies must be JSON (Content-Type: application/json).",
                                code="unsupported_media_type")
        return None

    class Gate:
        """Auth, body limit, access log and request metrics, before any route runs."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            path = scope["path"]
            started = time.perf_counter()
            status = {"code": 500}
            info: dict[str, Any] = {}
            scope["aitk.log"] = info

            async def send_tracked(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                refused = refused_as_unguarded(scope)
                if refused is not None:
                    return await refused.response()(scope, receive, send_tracked)
                if (path.startswith("/v1/") or path == "/metrics") and not authorized(scope):
                    return await APIError(401, "Incorrect or missing API key.", "authentication_error",
                                          "invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
                                          ).response()(scope, receive, send_tracked)
                length = dict(scope.get("headers", ())).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
                    return await _too_large().response()(scope, receive, send_tracked)
                seen = 0

                async def receive_limited():
                    nonlocal seen
                    message = await receive()
                    seen += len(message.get("body", b""))
                    if seen > settings.max_body_bytes:
                        raise _BodyTooLarge()
                    return message

                await self.app(scope, receive_limited, send_tracked)
            finally:
                elapsed = time.perf_counter() - started
                route = path if path in ROUTES else "other"
                metrics.count_request(route, status["code"], elapsed)
                fields = {"method": scope["method"], "path": route, "status": status["code"],
                          "duration_ms": round(elapsed * 1000, 1), **info}
                access_log.info(" ".join(f"{k}={v}" for k, v in fields.items()), extra={"fields": fields})

    app.add_middleware(Gate)

    # ------------------------------------------------------------------ errors
    def _too_large() -> APIError:
        return APIError(413, f"request body exceeds {settings.max_body_bytes} bytes", code="request_too_large")

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(_BodyTooLarge)
    async def _body_too_large(request: Request, exc: _BodyTooLarge):
        return _too_large().response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return _validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error")
        return APIError(500, "internal server error", "server_error").response()

    # ------------------------------------------------------------------ routes
    add_page_routes(app)  # the chat page at "/" (page.py): no key; its API calls need one

    @app.get("/health")
    async def health():
        if state.status == "ready":
            loaded = state.loaded
            return {"status": "ok", "model": loaded.base_id, "adapter": loaded.adapter_id,
                    "adapters": list(loaded.adapters), "merged": loaded.merged, "demo": loaded.demo,
                    "models": list(loaded.served)}
        if state.status == "failed":
            return JSONResponse({"status": "error", "error": state.error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        state.require_engine()
        loaded = state.loaded
        # Exactly the models a chat request may name (a merged base is gone, so not listed);
        # adapters first, the first being the default. Extra fields beyond vLLM's card:
        # clients may show them; OpenAI clients ignore them.
        demo = {"demo": True} if loaded.demo else {}
        cards = [schemas.model_card(model_id, None if model_id == loaded.base_id else loaded.base_id,
                                    loaded.context_len, int(state.started),
                                    **({"merged": loaded.merged} if model_id in loaded.adapters else {}), **demo)
                 for model_id in loaded.served]
        return {"object": "list", "data": cards}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        engine = state.require_engine()
        loaded = state.loaded
        raw = await request.body()
        try:
            req = schemas.ChatCompletionRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise _validation_error(exc.errors()) from None
        model_id = req.model or next(iter(loaded.served))
        if model_id not in loaded.served:
            raise _unknown_model(model_id, loaded)
        if len(req.messages) > settings.max_messages:
            raise APIError(400, f"too many messages: {len(req.messages)} (this server accepts at most "
                           f"{settings.max_messages})", param="messages", code="too_many_messages")
        context = loaded.context_len
        try:
            messages = [m.for_template() for m in req.messages]
            chars = sum(len(m["content"]) for m in messages)
            if chars > state.prompt_char_limit:  # cannot fit: spare the tokenizer's memory (limits.py)
                raise APIError(400, f"This model's maximum context length is {context} tokens. However, your "
                               f"messages have {chars} characters, more than {context} tokens can hold (at "
                               f"most {state.prompt_char_limit} characters).", param="messages",
                               code="context_length_exceeded")
            if len(raw) < INLINE_ENCODE_BYTES:
                # Short prompts encode in well under a millisecond: a thread hop would cost
                # more (it waits for the GIL the engine thread holds) and delay first tokens.
                prompt_ids = loaded.encode_chat(messages)
            else:
                if not encode_slots:  # anyio's limiter needs the running loop to exist
                    encode_slots.append(anyio.CapacityLimiter(ENCODE_THREADS))
                prompt_ids = await anyio.to_thread.run_sync(loaded.encode_chat, messages, limiter=encode_slots[0])
        except ValueError as exc:
            raise APIError(400, str(exc), param="messages") from None
        n = len(prompt_ids)
        if n >= context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, your "
                           f"messages resulted in {n} tokens.", param="messages", code="context_length_exceeded")
        wanted = req.requested_max_tokens
        if wanted is not None and wanted > settings.max_tokens_cap:
            param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
            raise APIError(400, f"{param} is too large: {wanted}. This server allows at most "
                           f"{settings.max_tokens_cap} completion tokens.", param=param, code="max_tokens_too_large")
        params = SamplingParams(
            max_tokens=min(wanted or settings.max_tokens_cap, context - n),
            temperature=req.temperature if req.temperature is not None else loaded.default_temperature,
            top_p=req.top_p if req.top_p is not None else loaded.default_top_p,
            seed=req.seed, stop=req.stop_list, ignore_eos=req.ignore_eos,
        )
        try:
            handle = engine.submit(prompt_ids, params, use_adapter=loaded.served[model_id],
                                   timeout_s=settings.request_timeout)
        except QueueFull as exc:
            raise APIError(429, f"the server is busy ({exc}); retry in {exc.retry_after_s} s",
                           "rate_limit_error", "queue_full",
                           headers={"Retry-After": str(exc.retry_after_s)}) from None
        metrics.add_prompt(n)
        cid, created = schemas.new_completion_id(), int(time.time())
        info = request.scope.get("aitk.log", {})
        info.update(id=cid, model=model_id, stream=req.stream, prompt_tokens=n)
        if req.stream:
            events = _stream_events(handle, cid, created, model_id, req.include_usage, info)
            return EventStream(events, handle.cancel, headers={"X-Request-Id": cid})
        text, done = await _result_unless_disconnected(handle, request)
        if done is None:  # the client left; nobody will read this
            return Response(status_code=499)
        _log_finish(info, done)
        if done.reason == "error":
            raise _generation_error(done)
        body = schemas.completion(cid, created, model_id, text, done.reason, done.prompt_tokens,
                                  done.completion_tokens)
        return JSONResponse(body, headers={"X-Request-Id": cid})

    return app


async def _stream_events(handle: RequestHandle, cid: str, created: int, model: str, include_usage: bool,
                         info: dict[str, Any]) -> AsyncIterator[bytes]:
    yield _sse(schemas.chunk(cid, created, model, {"role": "assistant", "content": ""}, None, include_usage))
    while True:
        text, done = await handle.next_output()
        if text:
            yield _sse(schemas.chunk(cid, created, model, {"content": text}, None, include_usage))
        if done is not None:
            break
    _log_finish(info, done)
    if done.reason == "error":
        err = _generation_error(done)
        yield _sse(schemas.error_body(err.message, err.type, err.code, err.param))
    else:
        yield _sse(schemas.chunk(cid, created, model, {}, done.reason, include_usage))
        if include_usage:
            yield _sse(schemas.usage_chunk(cid, created, model, done.prompt_tokens, done.completion_tokens))
    yield b"data: [DONE]\n\n"


async def _result_unless_disconnected(handle: RequestHandle, request: Request) -> tuple[str, Finished | None]:
    result = asyncio.ensure_future(handle.result())
    gone = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not result.done():
            handle.cancel()
            result.cancel()
    if result.cancelled():
        return "", None
    return result.result()


def _log_finish(info: dict[str, Any], done: Finished) -> None:
    info.update(finish=done.reason, completion_tokens=done.completion_tokens)
    if done.ttft_s is not None:
        info["ttft_ms"] = round(done.ttft_s * 1000, 1)
    if done.timed_out:
        info["timed_out"] = True


def _generation_error(done: Finished) -> APIError:
    if done.queue_timeout:
        return APIError(503, "the request timed out waiting for a free generation slot; retry later",
                        "service_unavailable", "queue_timeout", headers={"Retry-After": "5"})
    return APIError(500, done.error or "generation failed", "server_error", "generation_failed")


def _unknown_model(model_id: str, loaded) -> APIError:
    served = ", ".join(f"`{m}`" for m in loaded.served)
    if model_id == loaded.base_id and loaded.merged:
        message = (f"The model `{model_id}` is merged with the adapter `{loaded.adapter_id}` and is not served on "
                   f"its own; use `{loaded.adapter_id}` (or start the server with --serve-base to serve both).")
    else:
        message = f"The model `{model_id}` does not exist. This server serves {served}."
    return APIError(404, message, code="model_not_found", param="model")


_UNION_MEMBER = re.compile(r"str|int|float|bool|none|\w+\[.*\]|function-\w+\[.*\]")


def _validation_error(errors: list[Any]) -> APIError:
    first = errors[0] if errors else {}
    # pydantic names the member of a union it tried ("str", "list[str]"); the client's
    # param is the field itself.
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_MEMBER.fullmatch(str(p))]
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        message, loc = "the request body is not valid JSON", []
    where = ".".join(loc)
    return APIError(400, f"{where}: {message}" if where else message, param=where or None)
