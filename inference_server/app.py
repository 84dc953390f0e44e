"""The HTTP face of the server: a FastAPI app factory speaking OpenAI chat completions.

``create_app`` only wires, as vLLM's ``api_server.build_app`` does: ``gate`` (the loopback
guard, the API key, the body limit, access log and request metrics), ``errors`` (every
error in OpenAI's shape), ``serving`` (a chat request from its body to an SSE or JSON
answer; the model list), ``state`` (loading -> ready | failed). The model and the batching
live in ``engine`` (imported without torch, which loads in the background so ``/health``
answers from the first second).

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

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from .errors import add_error_handlers
from .gate import Gate
from .loading import load_model
from .metrics import Metrics
from .page import PATHS as PAGE_PATHS
from .page import add_page_routes
from .serving import Serving
from .settings import ServerSettings, check_security
from .state import Loader, ServerState

ROUTES = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", *PAGE_PATHS)


def create_app(settings: ServerSettings, *, loader: Loader | None = None,
               on_load_failure: Callable[[str], None] | None = None) -> FastAPI:
    """Build the app. ``loader(settings) -> LoadedModel`` runs in a background thread at
    start-up (default: ``loading.load_model``); ``on_load_failure(message)`` is told if it fails.
    Raises ConfigError if the settings are unsafe to serve (see ``check_security``)."""
    check_security(settings)
    state = ServerState()
    metrics = Metrics()
    metrics.gauge("aitk_queue_depth", "Requests waiting for a generation slot.",
                  lambda: state.engine.queue_depth if state.engine else 0)
    metrics.gauge("aitk_active_requests", "Requests generating now.",
                  lambda: state.engine.active if state.engine else 0)
    metrics.gauge("aitk_model_ready", "1 once the model is loaded.", lambda: 1 if state.engine else 0)
    serving = Serving(settings, state, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=state.load, args=(settings, loader or load_model, metrics, on_load_failure),
                         name="aitk-loader", daemon=True).start()
        yield
        if state.engine is not None:
            await anyio.to_thread.run_sync(state.engine.stop)

    app = FastAPI(title="aitk inference server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = state
    app.state.metrics = metrics
    app.add_middleware(Gate, settings=settings, metrics=metrics, routes=ROUTES)
    add_error_handlers(app, max_body_bytes=settings.max_body_bytes)
    add_page_routes(app)  # the chat page at "/" (page.py): no key; its API calls need one

    @app.get("/health")
    async def health():
        status, body, headers = state.health()
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return serving.models()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await serving.chat_completion(request)

    return app
