"""``aitk_tui.chat.wake``: when to wake, what the events carry, and how it ends.

Scripted /health answers (the real endpoint: tests/backend/test_scale_to_zero.py)."""

from __future__ import annotations

import asyncio
import io
from contextlib import aclosing

import pytest

from aitk_tui.chat.client import ChatError, HealthStatus
from aitk_tui.chat.wake import looks_asleep, wake
from aitk_tui.cli._printer import EventPrinter
from aitk_tui.events import Awake, Failed, LogLine, Waking

OK = HealthStatus(True, "ok", "ready", 200)
LOADING = HealthStatus(False, "loading", "the model is loading", 503)
HELD = HealthStatus(False, "asleep", "the endpoint is asleep or starting", transport="ConnectTimeout")
READ_HELD = HealthStatus(False, "unreachable", "the endpoint stopped answering", transport="ReadTimeout")
GATEWAY = HealthStatus(False, "asleep", "the endpoint is asleep or starting", 502)
REFUSED = HealthStatus(False, "asleep", "the endpoint is asleep or starting", transport="ConnectError")
NO_KEY = HealthStatus(False, "unauthorized", "the endpoint refused the API key", 401)
BROKEN = HealthStatus(False, "error", "the model failed to load: OSError", 503)


class Probes:
    def __init__(self, *answers: HealthStatus, then: HealthStatus = OK) -> None:
        self.answers, self.then, self.calls = list(answers), then, []

    async def health(self, *, timeout=None) -> HealthStatus:
        self.calls.append(timeout)
        return self.answers.pop(0) if self.answers else self.then


async def _all(client, **kw) -> list:
    kw.setdefault("interval_s", 0.02)
    kw.setdefault("tick_s", 0.01)
    async with aclosing(wake(client, **kw)) as events:
        return [e async for e in events]


async def test_a_healthy_endpoint_costs_one_short_probe_and_no_event():
    client = Probes()
    assert await _all(client) == []
    assert client.calls == [3.0]


@pytest.mark.parametrize("status", [REFUSED, HealthStatus(False, "unreachable", "could not talk", transport="ConnectError")])
async def test_nothing_listening_is_not_waited_for(status):
    client = Probes(status, then=status)
    assert await _all(client) == []  # the request goes and fails with its own clear message
    assert len(client.calls) == 1


@pytest.mark.parametrize("first", [HELD, READ_HELD, GATEWAY, LOADING])
async def test_a_sleeping_endpoint_yields_waking_until_healthy(first):
    client = Probes(first, LOADING, LOADING)
    events = await _all(client)
    waking = [e for e in events if isinstance(e, Waking)]
    assert waking and isinstance(events[-1], Awake) and events[-1].elapsed_s >= waking[-1].elapsed_s
    assert waking[0].state == first.state and waking[0].detail == first.message
    assert [e.elapsed_s for e in waking] == sorted(e.elapsed_s for e in waking)
    shown = io.StringIO()
    EventPrinter(err=shown)(waking[0])  # what `aitk chat` prints for it
    assert shown.getvalue().startswith("waking the replica… ")


async def test_the_latest_replica_log_line_rides_along_and_probe_lines_do_not():
    opened = []

    async def logs():
        opened.append(1)
        if len(opened) == 1:
            yield Failed("No replica of app is running, so there are no logs to show.")
            return
        yield LogLine("INFO loading the model")
        yield LogLine('GET path=/health status=503', probe=True)
        yield LogLine("   ")
        await asyncio.Event().wait()

    gate = asyncio.Event()

    class Client(Probes):
        async def health(self, *, timeout=None):
            self.calls.append(timeout)
            return OK if gate.is_set() else LOADING

    client = Client()
    lines: list = []
    async with aclosing(wake(client, logs=logs, interval_s=0.02, tick_s=0.01)) as events:
        async for event in events:
            if isinstance(event, Waking):
                lines.append(event.log_line)
                if event.log_line:
                    gate.set()
    assert lines[0] is None and lines[-1] == "INFO loading the model"
    assert len(opened) == 2  # reopened after "no replica yet"


@pytest.mark.parametrize("status, words", [(NO_KEY, "refused the API key"), (BROKEN, "failed to load")])
async def test_waiting_stops_when_waiting_cannot_help(status, words):
    with pytest.raises(ChatError, match=words):
        await _all(Probes(HELD, status, then=status))
    # At once: not asleep, so no waiting; the request itself then says what is wrong.
    assert await _all(Probes(status, then=status)) == []


async def test_an_endpoint_that_never_wakes_fails_after_the_timeout():
    with pytest.raises(ChatError, match="did not wake within") as caught:
        await _all(Probes(then=LOADING), timeout_s=0.1)
    assert "aitk logs" in caught.value.detail


async def test_cancelling_while_waking_stops_the_log_stream_too():
    closed = asyncio.Event()

    async def logs():
        try:
            yield LogLine("starting")
            await asyncio.Event().wait()
        finally:
            closed.set()

    async def run():
        async with aclosing(wake(Probes(then=LOADING), logs=logs, interval_s=0.02, tick_s=0.01)) as events:
            async for _ in events:
                pass

    task = asyncio.ensure_future(run())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 2)


def test_what_looks_asleep():
    assert all(looks_asleep(s) for s in (HELD, READ_HELD, GATEWAY, LOADING))
    assert not any(looks_asleep(s) for s in (OK, REFUSED, NO_KEY, BROKEN))


async def test_a_tls_handshake_cut_short_reads_as_not_up_yet():
    """The local ingress closes a connection when no replica is coming (a crash loop): the
    client hears "asleep or starting", not a certificate problem."""
    import socket
    import threading

    from aitk_tui.chat.client import ASLEEP, ChatClient

    server = socket.create_server(("127.0.0.1", 0))

    def close_each() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    try:
        async with ChatClient(f"https://127.0.0.1:{server.getsockname()[1]}", None) as client:
            with pytest.raises(ChatError) as caught:
                await client.list_models()
    finally:
        server.close()
    assert caught.value.message == ASLEEP, caught.value


async def test_the_elapsed_time_ticks_while_a_probe_is_held():
    """A held probe takes seconds (the ingress keeps it until a replica is up): the waking
    line must go on counting meanwhile, not freeze until the probe returns."""

    class Held(Probes):
        async def health(self, *, timeout=None):
            self.calls.append(timeout)
            if len(self.calls) > 1:
                await asyncio.sleep(0.3)
            return OK if len(self.calls) >= 3 else HELD

    events = await _all(Held(), interval_s=0.01, tick_s=0.05)
    waking = [e for e in events if isinstance(e, Waking)]
    assert isinstance(events[-1], Awake) and len(waking) >= 8, [round(e.elapsed_s, 2) for e in waking]
