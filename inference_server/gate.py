"""The gate every HTTP request passes before any route runs: the loopback guard of a server
without a key, the API key, the body limit, then the access log line and the request metrics.

An ASGI middleware (as vLLM's ``AuthenticationMiddleware``), so it sees a request before
FastAPI reads its body and counts the answer whatever produced it.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from .errors import APIError, BodyTooLarge, body_too_large
from .metrics import Metrics
from .settings import ServerSettings, is_loopback

access_log = logging.getLogger("inference_server.access")


class Gate:
    """Auth, body limit, access log and request metrics, before any route runs.

    ``routes``: the paths the metrics and the access log name; any other path is "other",
    so a client cannot grow the metrics with paths of its own. A route adds fields to the
    access line through ``scope["aitk.log"]``.
    """

    def __init__(self, app, *, settings: ServerSettings, metrics: Metrics, routes: tuple[str, ...]):
        self.app, self.metrics, self.routes = app, metrics, routes
        self.max_body_bytes = settings.max_body_bytes
        self.expected_key = settings.key_bytes()
        # Without a key on loopback, the address is the only guard, and a web page in the
        # user's browser can reach it: by DNS rebinding (its own name resolving to 127.0.0.1)
        # or by a cross-origin "simple" POST (text/plain needs no CORS preflight). So such a
        # server answers only requests addressed to a loopback name, and takes request bodies
        # only as JSON (which a cross-origin page cannot send without a preflight this server
        # never grants).
        self.open_loopback = self.expected_key is None and is_loopback(settings.host)

    def authorized(self, scope) -> bool:
        if self.expected_key is None:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected_key)
        return False

    def refused_as_unguarded(self, scope) -> APIError | None:
        if not self.open_loopback:
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

    def refusal(self, scope) -> APIError | None:
        """Why the gate answers this request itself, before reading its body; None: let it in."""
        refused = self.refused_as_unguarded(scope)
        if refused is not None:
            return refused
        path = scope["path"]
        if (path.startswith("/v1/") or path == "/metrics") and not self.authorized(scope):
            return APIError(401, "Incorrect or missing API key.", "authentication_error", "invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"})
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return body_too_large(self.max_body_bytes)
        return None

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
            refused = self.refusal(scope)
            if refused is not None:
                return await refused.response()(scope, receive, send_tracked)
            seen = 0

            async def receive_limited():
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge()
                return message

            await self.app(scope, receive_limited, send_tracked)
        finally:
            elapsed = time.perf_counter() - started
            route = path if path in self.routes else "other"
            self.metrics.count_request(route, status["code"], elapsed)
            fields = {"method": scope["method"], "path": route, "status": status["code"],
                      "duration_ms": round(elapsed * 1000, 1), **info}
            access_log.info(" ".join(f"{k}={v}" for k, v in fields.items()), extra={"fields": fields})
