"""Wake a sleeping endpoint before a chat request: the same steps for the TUI and ``aitk chat``.

A container app scaled to zero has no replica: the first request starts one, and ACA's
ingress holds it (or the client times out) while the replica installs, loads its model and
answers ``/health``, which on a GPU takes minutes. Sending the chat request straight away
would hang with no word or fail with a timeout. So :func:`wake` asks ``/health`` first with
a short timeout (cheap when the endpoint is up: one small request), and while the endpoint
is asleep, starting or loading it yields :class:`Waking` events with the elapsed time and the
latest line of the replica's log, until ``/health`` says ok (:class:`Awake`). The caller
then sends. Cancelling the generator (Esc, Ctrl+C) stops the probes and the log stream.

``/health`` cannot tell a replica that is coming from one that never will: both are held or
answered 502/503. So, when given one, :func:`wake` also asks the platform every
``platform_every_s`` whether the revision failed (``ActivationFailed``: "Deployment Progress
Deadline Exceeded. 0/1 replicas ready.") and stops at once, saying why, instead of waiting.

No Textual here: the TUI renders the events into the chat pane, the CLI into a status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..errors import AppGone, redact
from ..events import Awake, Event, Failed, LogLine, Waking
from .client import ChatError, HealthStatus

__all__ = ["WAKE_TIMEOUT_S", "looks_asleep", "wake"]

#: How long to wait for a replica to start: a GPU cold start installs packages and loads a
#: model (many minutes); the user can cancel sooner.
WAKE_TIMEOUT_S = 30 * 60.0
PROBE_TIMEOUT_S = 3.0  # per /health probe: a held request must not hide the progress
_LOG_RETRY_S = 1.0  # reopen the log stream this often while no replica exists yet
_LINE_MAX = 200

LogSource = Callable[[], AsyncIterator[Event]]
#: Asks the platform why no replica can come: one sentence, or None while one may.
PlatformCheck = Callable[[], Awaitable[str | None]]
PLATFORM_EVERY_S = 10.0  # one ARM read per check: often enough, far below ARM's read limits


class _LatestLine:
    """Follows the replica's log and keeps its latest line (probe access lines left out)."""

    def __init__(self, source: LogSource | None) -> None:
        self.line: str | None = None
        self._task = asyncio.ensure_future(self._follow(source)) if source is not None else None

    async def _follow(self, source: LogSource) -> None:
        while True:
            try:
                async with contextlib.aclosing(source()) as events:
                    async for event in events:
                        if isinstance(event, LogLine) and not event.probe and event.text.strip():
                            self.line = redact(event.text.strip())[:_LINE_MAX]
                        elif isinstance(event, Failed):
                            break  # no replica yet (scaled to zero), or the stream broke: retry
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the log line is a nicety; waking goes on without it
                pass
            await asyncio.sleep(_LOG_RETRY_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def wake(client: Any, *, logs: LogSource | None = None, platform: PlatformCheck | None = None,
               timeout_s: float = WAKE_TIMEOUT_S, interval_s: float = 1.0, tick_s: float = 0.5,
               platform_every_s: float = PLATFORM_EVERY_S,
               clock: Callable[[], float] = time.monotonic) -> AsyncIterator[Waking | Awake]:
    """Nothing when ``/health`` is ok at once; else Waking events (at least every ``tick_s``)
    and one Awake. Raises ChatError when the key is refused, the model failed to load, the
    platform says no replica can start (``platform``), or the endpoint is still not up after
    ``timeout_s``."""
    health = getattr(client, "health", None)
    if health is None:  # a client that cannot probe: send and let the request say
        return
    started = clock()
    status: HealthStatus = await health(timeout=PROBE_TIMEOUT_S)
    if status.ok:
        return
    if not looks_asleep(status):
        # Not a sleeping endpoint (nothing listens, a bad name...): the request says what, unless
        # the platform knows better (an ingress with no replica coming closes the connection).
        if platform is not None:
            check = asyncio.ensure_future(platform())
            await asyncio.wait({check})
            _raise_if_cannot_start(check)
        return
    latest = _LatestLine(logs)
    probe: asyncio.Future | None = None
    check: asyncio.Future | None = asyncio.ensure_future(platform()) if platform is not None else None
    next_check = clock() + platform_every_s
    try:
        next_probe = clock() + interval_s
        while True:
            _raise_if_fatal(status)
            if check is not None and check.done():
                _raise_if_cannot_start(check)
                check = None
                next_check = clock() + platform_every_s
            if check is None and platform is not None and clock() >= next_check:
                check = asyncio.ensure_future(platform())
            elapsed = clock() - started
            if elapsed >= timeout_s:
                raise ChatError(f"the endpoint did not wake within {_duration(timeout_s)}",
                                f"last /health: {status.message}; see `aitk logs`")
            yield Waking(elapsed, status.state, status.message, latest.line)
            # The probe runs beside the ticks: a probe the ingress holds (seconds) must not
            # freeze the elapsed time on screen.
            if probe is None and clock() >= next_probe:
                probe = asyncio.ensure_future(health(timeout=PROBE_TIMEOUT_S))
            wait_s = tick_s if probe is not None else min(tick_s, max(0.0, next_probe - clock()))
            if probe is None:
                await asyncio.sleep(wait_s)
                continue
            done, _ = await asyncio.wait({probe}, timeout=wait_s)
            if not done:
                continue
            status, probe = probe.result(), None
            next_probe = clock() + interval_s
            if status.ok:
                yield Awake(clock() - started)
                return
    finally:
        for task in (probe, check):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await latest.close()


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


_HELD = ("ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout")


def looks_asleep(status: HealthStatus) -> bool:
    """Asleep or starting: the ingress answered 502/503/504 (or "loading"), or held the probe
    past its timeout. A refused connection is not: ACA's ingress always answers, so nothing
    listens there (a wrong URL, a local cloud not running) and waiting would not help."""
    if status.state in ("error", "unauthorized"):  # a 503 saying the model failed to load is no sleep
        return False
    return status.state == "loading" or status.http_status in (502, 503, 504) or status.transport in _HELD


def _raise_if_cannot_start(check: asyncio.Future) -> None:
    """The platform says no replica will come (the revision failed to activate): stop waiting."""
    if check.cancelled():
        return
    if isinstance(check.exception(), AppGone):  # torn down: no replica will ever come
        gone = check.exception()
        raise ChatError(gone.message, gone.detail)
    if check.exception() is not None:
        return  # the check is a nicety: a failed ARM read must not end a wake that may succeed
    why = check.result()
    if why:
        raise ChatError("the endpoint cannot wake: no replica can start", why.rstrip("."))


def _raise_if_fatal(status: HealthStatus) -> None:
    """Waiting cannot help a refused key or a model that failed to load."""
    if status.state == "unauthorized":
        raise ChatError("the endpoint refused the API key" if status.http_status in (401, 403)
                        else status.message, status.message, status.http_status)
    if status.state == "error":
        raise ChatError(status.message, None, status.http_status)
