"""The app ingress on its own: held connections, splicing, busy/idle, and its settings' edges.

A plain TCP echo server stands in for the replica (the ingress passes bytes as they are, so
TLS plays no part here); the scale-to-zero path with the real SDK and server is in
tests/backend/test_scale_to_zero.py.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aitk_tui.local.ingress import (
    DEFAULT_IDLE_S,
    Ingress,
    idle_s_from_env,
    min_replicas,
)
from aitk_tui.local.resources import free_port
from tests.fixtures_local import wait_for


class Echo:
    """A TCP server answering every chunk with "echo:" + chunk (the replica)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c: socket.socket) -> None:
        with c:
            while data := c.recv(65536):
                c.sendall(b"echo:" + data)

    def close(self) -> None:
        self.sock.close()


class Backend:
    """The supervisor's side: a port once ``up`` is set; None at once when ``failed``."""

    def __init__(self, port: int) -> None:
        self.port, self.up, self.failed, self.asked = port, threading.Event(), False, 0

    def backend_port(self, deadline, client_alive):
        self.asked += 1
        while time.monotonic() < deadline and client_alive():
            if self.failed:
                return None
            if self.up.is_set():
                return self.port
            time.sleep(0.02)
        return None


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


def _ingress(backend: Backend, **kw) -> Ingress:
    ingress = Ingress("app", free_port(), lambda: backend, lambda text: None, **kw).start()
    wait_for(lambda: _connects(ingress.port), 5, what="the ingress to listen")
    return ingress


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _recv(s: socket.socket, n: int) -> bytes:
    s.settimeout(5)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_a_request_is_held_until_the_replica_is_up_then_answered(echo):
    backend = Backend(echo.port)
    ingress = _ingress(backend)
    try:
        c = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
        c.sendall(b"hello")  # sent while no replica is up: kept, not lost
        wait_for(ingress.busy, 5, what="the held request to count as busy")
        time.sleep(0.2)
        backend.up.set()
        assert _recv(c, 10) == b"echo:hello"
        assert not ingress.busy()  # answered: an idle keep-alive connection does not keep it awake
        c.sendall(b"again")
        assert _recv(c, 10) == b"echo:again"
        before = ingress.idle_since()
        c.close()
        wait_for(lambda: not ingress._conns, 5, what="the connection to be let go")
        assert ingress.idle_since() >= before
    finally:
        ingress.close()


def test_a_client_that_gives_up_while_held_frees_its_slot_and_a_failed_replica_closes_at_once(echo):
    backend = Backend(echo.port)
    ingress = _ingress(backend)
    try:
        c = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
        c.sendall(b"x")
        wait_for(lambda: len(ingress._conns) == 1, 5, what="the held connection")
        c.close()
        wait_for(lambda: not ingress._conns, 5, what="the slot to be freed")

        backend.failed = True  # a crash-looping replica: no use holding the request
        c = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
        started = time.monotonic()
        assert _recv(c, 1) == b""
        assert time.monotonic() - started < 2
        c.close()
    finally:
        ingress.close()


def test_a_request_held_past_the_hold_time_is_closed(echo):
    ingress = _ingress(Backend(echo.port), hold_s=0.3)
    try:
        c = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
        c.sendall(b"x")
        assert _recv(c, 1) == b""  # never up: closed after hold_s, as ACA gives up after 240 s
    finally:
        ingress.close()


def test_closing_the_ingress_frees_its_port_and_ends_its_connections(echo):
    backend = Backend(echo.port)
    backend.up.set()
    ingress = _ingress(backend)
    c = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
    c.sendall(b"a")
    assert _recv(c, 6) == b"echo:a"
    ingress.close()
    assert _recv(c, 1) == b""
    socket.create_server(("127.0.0.1", ingress.port)).close()  # the port is free again


@pytest.mark.parametrize("raw, expected", [
    ("", DEFAULT_IDLE_S), ("2", 2.0), ("0.5", 0.5), ("nan", DEFAULT_IDLE_S), ("0", DEFAULT_IDLE_S),
    ("-3", DEFAULT_IDLE_S), ("inf", DEFAULT_IDLE_S), (str(2**64), DEFAULT_IDLE_S), ("5e-324", 5e-324),
    ("ten", DEFAULT_IDLE_S),
])
def test_the_idle_period_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("AITK_LOCAL_IDLE_S", raw)
    assert idle_s_from_env() == expected


@pytest.mark.parametrize("scale, expected", [
    (None, 0), ({}, 0), ({"minReplicas": 1}, 1), ({"minReplicas": 0}, 0), ({"minReplicas": True}, 0),
    ({"minReplicas": -1}, 0), ({"minReplicas": "1"}, 0), ({"minReplicas": 2**64}, 2**64),
])
def test_min_replicas_of_a_record(scale, expected):
    record = {"properties": {"template": {"scale": scale} if scale is not None else {}}}
    assert min_replicas(record) == expected
    assert min_replicas(None) == 0
