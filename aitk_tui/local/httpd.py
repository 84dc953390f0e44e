"""A small HTTPS server (standard library) with the habits the Azure SDK needs.

HTTP/1.1 keep-alive, ``Content-Length`` on every response, no body on HEAD. The TLS
handshake runs in the connection's own thread, so one slow client cannot stall the
accept loop. ``stop()`` closes every open connection, including long-lived log streams.

A request body is read only when the handler asks for it (``Request.body``), which it
does after checking authorisation, and never past ``MAX_BODY_BYTES`` (Azure's own limit
for a Put Range and an ARM request: 4 MiB): a larger one is answered 413 unread. A body
the handler did not read is drained (bounded) after the answer and the connection closed.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("aitk_tui.local")
MAX_BODY_BYTES = 4 * 1024 * 1024
_LINGER_S = 1.0  # how long an unread body is drained after the answer, so the client reads it


class HttpError(Exception):
    """An error answer: status, error code (ARM ``error.code`` / Storage ``x-ms-error-code``), message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details  # ARM's nested error.details (the cause is often two levels down)

    def error_body(self) -> dict[str, Any]:
        """ARM's ``error`` object: code, message and (when there are any) details."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class DropConnection(Exception):
    """Close the connection without answering (fault injection)."""


def too_large(limit: int = MAX_BODY_BYTES) -> HttpError:
    return HttpError(413, "RequestBodyTooLarge",
                     f"The request body is too large and exceeds the maximum permissible limit ({limit} bytes).")


@dataclass
class Request:
    method: str
    raw_path: str  # as sent, still percent-encoded, without the query
    raw_query: str
    headers: Any  # email.message.Message: case-insensitive .get()
    # The body, or a callable that reads it (at most once, on first use of ``body``).
    source: bytes | Callable[[], bytes] = b""
    query: dict[str, str] = field(default_factory=dict)  # keys lower-cased, values decoded

    @property
    def body(self) -> bytes:
        if callable(self.source):
            self.source = self.source()  # if this raises, the body stays pending (and is drained)
        return self.source

    @property
    def body_pending(self) -> bool:
        """True while a body announced by the client has not been read."""
        return callable(self.source)

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    @property
    def segments(self) -> list[str]:
        return [unquote(s) for s in self.raw_path.strip("/").split("/") if s != ""]

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(400, "InvalidRequestContent", f"The request content is not valid JSON: {e}") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body: called with write(bytes) and alive() -> bool (False once the client left).
    # Without a Content-Length header the connection closes after it.
    stream: Callable[[Callable[[bytes], None], Callable[[], bool]], None] | None = None


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    body = b"" if obj is None else json.dumps(obj).encode("utf-8")
    return Response(status, body, h)


def _parse_query(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out[unquote(k.replace("+", " ")).lower()] = unquote(v.replace("+", " "))
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aitk-local-cloud"
    sys_version = ""
    timeout = 120
    server: "_Server"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.client_address[0], *args)

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            try:
                size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise HttpError(400, "InvalidInput", "The chunked request body is malformed.") from None
            if size == 0:
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                raise too_large()
            chunks.append(self.rfile.read(size))
            self.rfile.readline(100)

    def _body_source(self) -> bytes | Callable[[], bytes]:
        """What the body is: empty, or a reader; raises HttpError for a Content-Length we refuse."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit() or len(raw) > 19:  # also "-1", "1e9", "2**64"
            raise HttpError(400, "InvalidHeaderValue", f"The Content-Length {raw[:40]!r} is not valid.")
        n = self._announced = int(raw)
        if n == 0:
            return b""

        def read() -> bytes:
            if n > MAX_BODY_BYTES:
                raise too_large()
            return self.rfile.read(n)
        return read

    def _dispatch(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        self._announced = None
        try:
            source = self._body_source()
        except HttpError as e:
            self.close_connection = True
            body = json.dumps({"error": {"code": e.code, "message": e.message}}).encode()
            self._send(Response(e.status, body, {"Content-Type": "application/json", "x-ms-error-code": e.code}),
                       head=self.command == "HEAD")
            return
        req = Request(self.command, raw_path, raw_query, self.headers, source, _parse_query(raw_query))
        try:
            resp = self.server.app(req)
        except DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(resp, head=self.command == "HEAD")
        if req.body_pending:
            self._linger()

    def _linger(self) -> None:
        """Discard a body nobody read (the request was refused). One within the limit is read
        to its end, so the connection stays usable; of a larger one a bounded part is drained,
        so the client can read the answer before the connection closes."""
        n = self._announced
        if n is not None and n <= MAX_BODY_BYTES:
            try:
                self.connection.settimeout(_LINGER_S * 5)
                if len(self.rfile.read(n)) == n:
                    return
            except (OSError, ValueError):
                pass
            finally:
                try:
                    self.connection.settimeout(self.timeout)
                except OSError:
                    pass
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.settimeout(_LINGER_S)
            left = MAX_BODY_BYTES + 65536
            deadline = time.monotonic() + _LINGER_S
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(65536, left)) if hasattr(self.rfile, "read1") else b""
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, ValueError):
            pass

    def _send(self, resp: Response, head: bool) -> None:
        self.send_response(resp.status)
        names = {k.lower() for k in resp.headers}
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.stream is not None:
            if "content-length" not in names:  # an open-ended stream ends when the connection does
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            def alive() -> bool:  # the client sends nothing more: readable means it went away
                try:
                    return not select.select([self.connection], [], [], 0)[0]
                except (OSError, ValueError):
                    return False
            try:
                resp.stream(write, alive)
            except (OSError, ValueError):
                self.close_connection = True
            return
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if resp.body and not head:
            self.wfile.write(resp.body)


for _m in ("GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS"):
    setattr(_Handler, f"do_{_m}", _Handler._dispatch)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], ssl_ctx: ssl.SSLContext, app: Callable[[Request], Response]) -> None:
        self.ssl_ctx = ssl_ctx
        self.app = app
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            request.settimeout(30)
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            self.shutdown_request(request)
            return
        with self.conns_lock:
            self.conns.add(tls)
        try:
            super().process_request_thread(tls, client_address)
        finally:
            with self.conns_lock:
                self.conns.discard(tls)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HttpsServer:
    """Serves ``app(Request) -> Response`` on https://host:port in background threads."""

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext, app: Callable[[Request], Response]) -> None:
        self._server = _Server((host, port), ssl_ctx, app)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="aitk-local-https", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
