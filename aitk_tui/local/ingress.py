"""The app's ingress: the local cloud owns the app's port and passes connections to its replica.

ACA's ingress (Envoy) sits between a client and the replicas, which is what lets an app
scale to zero: a request that finds no replica is held while one starts. Here each app's
stable port is listened on by an :class:`Ingress`, and every connection is spliced, bytes
as they are (TLS stays end to end with the replica's own certificate), to the replica
process, which listens on a private port of its own. The ingress also tells the replica's
supervisor when a request last came and whether one is still waiting for its answer, so the
supervisor can scale to zero after an idle period.

A connection that arrives while no replica is up is held (its first bytes read and kept)
until the replica accepts connections, up to ``HOLD_S``, as ACA holds a request during a
cold start; one that arrives while the app is stopped or its replica crash-loops is closed
at once (no replica is coming soon).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("aitk_tui.local")

HOLD_S = 240.0  # ACA's ingress gives up on a request after 240 s
MAX_CONNECTIONS = 1024
MAX_HELD_BYTES = 1 << 20  # what a client may send before its replica is up
_CHUNK = 1 << 16
#: ACA's default cooldown: an app with min 0 replicas scales to zero after this long idle.
DEFAULT_IDLE_S = 300.0


def idle_s_from_env(default: float = DEFAULT_IDLE_S) -> float:
    """``AITK_LOCAL_IDLE_S``: seconds without a request before a min-0 app scales to zero."""
    raw = os.environ.get("AITK_LOCAL_IDLE_S", "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("AITK_LOCAL_IDLE_S=%r is not a number of seconds; using %g", raw, default)
        return default
    if not 0.0 < value < 1e9:  # NaN, 0, negative and absurd values are refused too
        log.warning("AITK_LOCAL_IDLE_S=%r is out of range (0 .. 1e9 s); using %g", raw, default)
        return default
    return value


def min_replicas(record: dict | None) -> int:
    """The app's ``template.scale.minReplicas`` (ACA's default when absent: 0)."""
    scale = (((record or {}).get("properties") or {}).get("template") or {}).get("scale") or {}
    value = scale.get("minReplicas")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class Backend(Protocol):
    def backend_port(self, deadline: float, client_alive: Callable[[], bool]) -> int | None:
        """The replica's private port once it accepts connections (waking it if scaled to
        zero); None when no replica will come in time."""


class _Conn:
    __slots__ = ("backend", "client", "last_down", "last_up")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.backend: socket.socket | None = None
        self.last_up = time.monotonic()  # last bytes from the client
        self.last_down = 0.0  # last bytes from the replica

    @property
    def waiting(self) -> bool:
        """A request went up and no answer has come down since: the replica is busy with it."""
        return self.last_up > self.last_down


class Ingress:
    """Listens on ``port`` (127.0.0.1) and splices each connection to ``backend``."""

    def __init__(self, name: str, port: int, backend_for: Callable[[], Backend | None], note: Callable[[str], None],
                 *, hold_s: float = HOLD_S) -> None:
        self.name, self.port, self.backend_for, self.note, self.hold_s = name, port, backend_for, note, hold_s
        self.last_activity = time.monotonic()
        self._conns: set[_Conn] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name=f"aitk-ingress-{name}", daemon=True)

    # -- what the supervisor asks ----------------------------------------------------------
    def busy(self) -> bool:
        """Is a request waiting for its answer (a long prompt still in prefill counts)?"""
        with self._lock:
            return any(c.waiting for c in self._conns)

    def idle_since(self) -> float:
        """Monotonic time of the last byte through the ingress (or of its start)."""
        with self._lock:
            times = [self.last_activity] + [max(c.last_up, c.last_down) for c in self._conns]
        return max(times)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Ingress:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            _close(c.client)
            if c.backend is not None:
                _close(c.backend)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=3)

    def _bind(self) -> socket.socket | None:
        warned = False
        while not self._closed.is_set():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
                s.listen(128)
                s.settimeout(0.5)
                return s
            except OSError as e:
                s.close()
                if not warned:  # e.g. a process of a crashed server still holds it; kill_recorded frees it
                    self.note(f"the app's ingress cannot listen on 127.0.0.1:{self.port} yet ({e}); retrying")
                    warned = True
                self._closed.wait(1.0)
        return None

    def _serve(self) -> None:
        self._listener = listener = self._bind()
        if listener is None:
            return
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                full = len(self._conns) >= MAX_CONNECTIONS
                self.last_activity = time.monotonic()
            if full:
                _close(client)
                continue
            conn = _Conn(client)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), name=f"aitk-ingress-{self.name}-conn",
                             daemon=True).start()

    # -- one connection -------------------------------------------------------------------------
    def _handle(self, conn: _Conn) -> None:
        try:
            held = bytearray()
            gone = False

            def client_alive() -> bool:
                """Read what the client sends meanwhile (its TLS hello), so a client that gives up is noticed."""
                nonlocal gone
                while not gone and not self._closed.is_set():
                    if not _readable([conn.client], 0):
                        break
                    try:
                        data = conn.client.recv(_CHUNK)
                    except OSError:
                        data = b""
                    if not data or len(held) + len(data) > MAX_HELD_BYTES:
                        gone = True
                        break
                    held.extend(data)
                    conn.last_up = time.monotonic()
                return not gone and not self._closed.is_set()

            backend = self.backend_for()
            port = backend.backend_port(time.monotonic() + self.hold_s, client_alive) if backend else None
            if port is None or not client_alive():
                return
            try:
                conn.backend = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                return
            conn.backend.settimeout(None)
            if held:
                conn.backend.sendall(held)
            self._splice(conn)
        except (OSError, ValueError):  # ValueError: a socket closed under us by close()
            pass
        finally:
            _close(conn.client)
            if conn.backend is not None:
                _close(conn.backend)
            with self._lock:
                self._conns.discard(conn)
                self.last_activity = time.monotonic()

    def _splice(self, conn: _Conn) -> None:
        assert conn.backend is not None
        peer = {conn.client: conn.backend, conn.backend: conn.client}
        open_ = [conn.client, conn.backend]
        while open_ and not self._closed.is_set():
            for s in _readable(open_, 1.0):
                if s not in open_:
                    continue
                data = s.recv(_CHUNK)
                now = time.monotonic()
                if s is conn.client:
                    conn.last_up = now if data else conn.last_up
                else:
                    conn.last_down = now
                if not data:
                    open_.remove(s)
                    try:
                        peer[s].shutdown(socket.SHUT_WR)
                    except OSError:
                        open_.clear()  # the other side is gone too
                    if s is conn.backend:
                        return  # the replica closed: nothing more can come back
                    continue
                peer[s].sendall(data)


def _readable(socks: list[socket.socket], timeout_s: float) -> list[socket.socket]:
    """The sockets with data (or EOF) to read; poll(), since select() fails past fd 1023."""
    poller = select.poll()
    by_fd = {}
    for s in socks:
        by_fd[s.fileno()] = s
        poller.register(s, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
    return [by_fd[fd] for fd, _ in poller.poll(timeout_s * 1000) if fd in by_fd]


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass
