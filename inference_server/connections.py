"""Connection guards for uvicorn: a deadline for each request head and a connection limit.

uvicorn (0.54) arms its keep-alive timer only after a response, and cancels it on any byte
received; ``limit_concurrency`` acts only once a request head is complete. So a client
that connects and sends nothing, or part of a request line, holds a socket and a protocol
object for ever, and a few thousand of them starve real clients. Here, on top of uvicorn's
h11 protocol:

- **Head deadline**: the request line and headers must be complete ``header_timeout``
  seconds after the connection opens (or after the first byte of a later request on a
  kept-alive connection); otherwise the connection is closed. The deadline is not
  extended by each byte, so a client that trickles a byte at a time is dropped too.
- **Connection limit**: at most ``max_connections`` are open. At the limit a new
  connection evicts the oldest one with no request in flight (idle, or still sending its
  head); only when every connection is busy is the newcomer closed instead. So during a
  flood of half-open connections a real client still gets in.
- **Body deadline**: once the head is complete, the body must be complete within
  ``body_timeout`` seconds; otherwise the connection is closed (the app's ``receive()``
  sees a disconnect). The deadline is not extended by each byte either.
- **Early answers**: a response sent before the request's body arrived (a 401 without a
  key, a 413) leaves a connection whose client is still sending. uvicorn discards that body
  but cancels its keep-alive timer on every byte, so a client trickling a byte now and then
  held the connection for ever, and it never counted as idle: 512 of them, with no key,
  locked out every real client. Such a connection now counts as idle (evictable at the
  limit: nothing is lost by closing it) and gets the rest of its body read and discarded
  within ``min(body_timeout, header_timeout)`` seconds, or is closed.
- **Header size**: h11's ``max_incomplete_event_size`` (``max_header_bytes``) bounds what
  one connection may buffer before its head is complete; beyond it the answer is 400.

The h11 implementation is used whatever else is installed: it is the one these guards
extend, and what this server spends per request is dwarfed by generation.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("inference_server.connections")

REPORT_EVERY_S = 10.0  # a flood of dropped connections is summarised, not logged one by one


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config plus the guards' settings and bookkeeping (one per server)."""

    def __init__(self, app: Any, *, header_timeout: float, max_connections: int, body_timeout: float = 60.0,
                 **kwargs: Any):
        kwargs.setdefault("http", GuardedH11Protocol)
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        # Insertion-ordered, so the oldest is first and eviction is O(1) even in a flood
        # (asyncio accepts a whole backlog before any closed connection is reported lost).
        self.open_connections: dict[GuardedH11Protocol, None] = {}  # not yet closed by us
        self.idle_connections: dict[GuardedH11Protocol, None] = {}  # no request in flight
        self._dropped: Counter[str] = Counter()
        self._reported_at = 0.0

    def note_dropped(self, reason: str) -> None:
        self._dropped[reason] += 1
        now = time.monotonic()
        if now - self._reported_at >= REPORT_EVERY_S:
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self._dropped.items()))
            log.warning("dropped connections: %s", summary)
            self._dropped.clear()
            self._reported_at = now


class GuardedH11Protocol(H11Protocol):
    def __init__(self, config: GuardedConfig, server_state: Any, app_state: dict[str, Any], _loop: Any = None):
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: Any = None
        self._body_timer: Any = None

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        config = self.config
        config.open_connections[self] = None
        if len(config.open_connections) > config.max_connections:
            victim = next(iter(config.idle_connections), None)  # the oldest with no request in flight
            if victim is None:
                config.note_dropped("refused at the connection limit (all busy)")
                self._close()
                return
            config.note_dropped("evicted at the connection limit (idle or unfinished head)")
            victim._close()
        config.idle_connections[self] = None
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._forget()
            return
        if self.conn.their_state is h11.SEND_BODY:
            self._cancel_head_timer()
            if self._body_timer is None:
                self._arm_body_timer(self.config.body_timeout)
        else:
            self._cancel_body_timer()
        if not self._idle():
            # The head is complete: a request is in flight.
            self._cancel_head_timer()
            self.config.idle_connections.pop(self, None)
        elif self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._arm_head_timer()  # first bytes of a later request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # Between requests uvicorn's keep-alive timer applies; the next head gets its own deadline.
        self._cancel_head_timer()
        answered_early = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if answered_early:  # the rest of the body is read and discarded, briefly
            self._arm_body_timer(min(self.config.body_timeout, self.config.header_timeout))
        if self._idle():
            self.config.idle_connections[self] = None

    # -- guards ------------------------------------------------------------------------
    def _idle(self) -> bool:
        """No request in flight: nothing is lost by closing it. That includes a request already
        answered whose client is still sending the body nobody will read."""
        if self.transport.is_closing() or not (self.cycle is None or self.cycle.response_complete):
            return False
        return self.conn.their_state is h11.IDLE or (self.conn.their_state is h11.SEND_BODY and self.cycle is not None)

    def _forget(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        self.config.open_connections.pop(self, None)
        self.config.idle_connections.pop(self, None)

    def _close(self) -> None:
        self._forget()
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.config.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_body_timer(self, seconds: float) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(seconds, self._body_timed_out)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            answered = self.cycle is not None and self.cycle.response_complete
            self.config.note_dropped("closed: request body not sent after the answer" if answered
                                     else "closed: request body not complete in time")
            self._close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._idle():
            self.config.note_dropped("closed: request head not complete in time")
            self._close()


FD_HEADROOM = 128  # model files, the log, sockets the server opens itself


def ensure_fd_headroom(max_connections: int) -> None:
    """Raise the open-file soft limit so ``max_connections`` fit (a 1024 or, on macOS, 256
    soft limit would make accept() fail with EMFILE first); warn when the hard limit forbids it."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FD_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning("open files are limited to %d: fewer than --max-connections %d plus %d; lower "
                    "--max-connections or raise the limit (ulimit -n)", target, max_connections, FD_HEADROOM)
