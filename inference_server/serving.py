"""Serving the OpenAI routes (as vLLM's ``serving_chat``/``serving_models``): a chat request
from its raw body to a streamed (SSE) or whole (JSON) answer, and the list of models.

A chat request is validated, checked against the limits (messages, context, max_tokens
cap), tokenized (long prompts in a few shared threads, ``limits.ENCODE_THREADS``), and
submitted to the engine; then its outputs are framed as chunks, or gathered into one
completion unless the client leaves first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from . import schemas
from .errors import APIError, validation_error
from .handles import Finished, QueueFull, RequestHandle, SamplingParams
from .limits import ENCODE_THREADS
from .metrics import Metrics
from .settings import ServerSettings
from .state import ServerState

INLINE_ENCODE_BYTES = 32 * 1024


class Serving:
    """The OpenAI routes over one server's state (the engine, once loaded)."""

    def __init__(self, settings: ServerSettings, state: ServerState, metrics: Metrics):
        self.settings, self.state, self.metrics = settings, state, metrics
        self._encode_slots: anyio.CapacityLimiter | None = None  # threads that tokenize long prompts

    def models(self) -> dict[str, Any]:
        self.state.require_engine()
        loaded = self.state.loaded
        # Exactly the models a chat request may name (a merged base is gone, so not listed);
        # adapters first, the first being the default. Extra fields beyond vLLM's card:
        # clients may show them; OpenAI clients ignore them.
        demo = {"demo": True} if loaded.demo else {}
        cards = [schemas.model_card(model_id, None if model_id == loaded.base_id else loaded.base_id,
                                    loaded.context_len, int(self.state.started),
                                    **({"merged": loaded.merged} if model_id in loaded.adapters else {}), **demo)
                 for model_id in loaded.served]
        return {"object": "list", "data": cards}

    async def chat_completion(self, request: Request) -> Response:
        settings, state = self.settings, self.state
        engine = state.require_engine()
        loaded = state.loaded
        raw = await request.body()
        try:
            req = schemas.ChatCompletionRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_error(exc.errors()) from None
        model_id = req.model or next(iter(loaded.served))
        if model_id not in loaded.served:
            raise unknown_model(model_id, loaded)
        if len(req.messages) > settings.max_messages:
            raise APIError(400, f"too many messages: {len(req.messages)} (this server accepts at most "
                           f"{settings.max_messages})", param="messages", code="too_many_messages")
        prompt_ids = await self._encode(req, len(raw))
        n, context = len(prompt_ids), loaded.context_len
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
        self.metrics.add_prompt(n)
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
            raise generation_error(done)
        body = schemas.completion(cid, created, model_id, text, done.reason, done.prompt_tokens,
                                  done.completion_tokens)
        return JSONResponse(body, headers={"X-Request-Id": cid})

    async def _encode(self, req: schemas.ChatCompletionRequest, body_bytes: int) -> list[int]:
        """The prompt's token ids; a prompt that cannot fit is refused before the tokenizer
        spends memory on it (limits.py)."""
        loaded, limit = self.state.loaded, self.state.prompt_char_limit
        context = loaded.context_len
        try:
            messages = [m.for_template() for m in req.messages]
            chars = sum(len(m["content"]) for m in messages)
            if chars > limit:
                raise APIError(400, f"This model's maximum context length is {context} tokens. However, your "
                               f"messages have {chars} characters, more than {context} tokens can hold (at "
                               f"most {limit} characters).", param="messages", code="context_length_exceeded")
            if body_bytes < INLINE_ENCODE_BYTES:
                # Short prompts encode in well under a millisecond: a thread hop would cost
                # more (it waits for the GIL the engine thread holds) and delay first tokens.
                return loaded.encode_chat(messages)
            if self._encode_slots is None:  # anyio's limiter needs the running loop to exist
                self._encode_slots = anyio.CapacityLimiter(ENCODE_THREADS)
            return await anyio.to_thread.run_sync(loaded.encode_chat, messages, limiter=self._encode_slots)
        except ValueError as exc:
            raise APIError(400, str(exc), param="messages") from None


def unknown_model(model_id: str, loaded) -> APIError:
    served = ", ".join(f"`{m}`" for m in loaded.served)
    if model_id == loaded.base_id and loaded.merged:
        message = (f"The model `{model_id}` is merged with the adapter `{loaded.adapter_id}` and is not served on "
                   f"its own; use `{loaded.adapter_id}` (or start the server with --serve-base to serve both).")
    else:
        message = f"The model `{model_id}` does not exist. This server serves {served}."
    return APIError(404, message, code="model_not_found", param="model")


def generation_error(done: Finished) -> APIError:
    if done.queue_timeout:
        return APIError(503, "the request timed out waiting for a free generation slot; retry later",
                        "service_unavailable", "queue_timeout", headers={"Retry-After": "5"})
    return APIError(500, done.error or "generation failed", "server_error", "generation_failed")


# -- the answer ---------------------------------------------------------------------------
def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


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
        yield _sse(generation_error(done).body())
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
