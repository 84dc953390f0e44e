"""Replica log streaming (what ``az containerapp logs show --follow [--type system]`` does).

Console logs: the latest revision's replicas name each container's ``logStreamEndpoint``;
the app's ``getAuthtoken`` gives a short-lived bearer token for it. Each replica is
streamed with httpx (``follow=true&output=text&tailLines=N``); lines of several replicas
interleave, tagged with the replica name. System logs (replica assignment, image pull,
probe failures, restarts, scale events): one stream from the app's
``eventStreamEndpoint`` with the same token, one JSON event per line, shown as
``Reason: Msg``. Failures are yielded as ``Failed`` (token redacted).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from ..config.inference_config import APP_KEYS, InferenceConfig
from ..errors import AitkError, redact, register_secret
from ..events import Event, Failed, LogLine
from .models import pick
from .operate import rest_json
from .revision_state import RevisionState, latest_revision_name, revision_state
from .sdkerrors import failed

if TYPE_CHECKING:
    from .context import OperationContext

_END = object()

# An access-log line of a GET/HEAD /health: the inference server's own (``path=/health`` or
# JSON ``"path": "/health"``) or a common server's (``"GET /health HTTP/1.1" 200``). The
# platform probes every few seconds, so these were 95 % of what a replica printed.
_PROBE = re.compile(r'(?:\bpath=|"path":\s*"|"(?:GET|HEAD) )/health(?:[\s"?/]|$)')


def is_probe(text: str) -> bool:
    return bool(_PROBE.search(text))


def short_replica(name: str) -> str:
    """``aiacaapp--0000001-646779b4b6-x7k2p`` -> ``x7k2p``: the part that tells replicas apart
    (the full 42 characters pushed every line off the right edge)."""
    tail = name.rsplit("-", 1)[-1]
    return tail if tail and tail != name else name[-12:]


LogKind = Literal["console", "system"]


def system_event_text(line: str) -> tuple[str, str, bool]:
    """One line of the system log stream -> (text, source, warning). ACA sends JSON events
    (``Reason``, ``Msg``, ``Type``, ``ReplicaName``...); a line that is not one is kept as it is."""
    event = _json_object(line)
    if event is None:
        return line, "system", False
    reason, msg = str(event.get("Reason") or "").strip(), str(event.get("Msg") or "").strip()
    replica = str(event.get("ReplicaName") or "")
    warning = str(event.get("Type") or "").lower() == "warning"
    text = f"{reason}: {msg}" if reason and msg else (msg or reason or line)
    return text, short_replica(replica) if replica else "system", warning


def system_event_line(line: str) -> LogLine:
    """A system-log event as a LogLine stamped with the event's own time (``TimeStamp``), not
    the time it was fetched: a page of past events read all at once showed one time."""
    text, origin, warning = system_event_text(line)
    event = _json_object(line)
    when = event_time(event.get("TimeStamp")) if event else None
    return LogLine(text, origin, kind="system", warning=warning, time=when, raw=line if event else None)


# The inference server's JSON log (``{"ts", "level", "logger", "msg", ...}``): the fields shown
# after the message as key=value, the traceback as its last line.
_SERVER_FIELDS = ("ts", "level", "logger", "msg", "exc")


def console_line(text: str, source: str) -> LogLine:
    """A replica's output line; the server's JSON lines become time, level and message."""
    entry = _json_object(text) if text.startswith("{") else None
    if entry is None or not isinstance(entry.get("level"), str):
        return LogLine(text, source, probe=is_probe(text))
    msg = str(entry["msg"]) if entry.get("msg") not in (None, "") else ""
    # Fields the message does not already say (the runtime line repeats its versions as fields).
    parts = [msg] if msg else []
    parts += [f"{k}={v}" for k, v in entry.items()
              if k not in _SERVER_FIELDS and v is not None and not (msg and _says(msg, str(v)))]
    if entry.get("exc"):
        parts.append("| " + (str(entry["exc"]).strip().splitlines() or [""])[-1])
    return LogLine(" ".join(parts), source, probe=is_probe(text), time=event_time(entry.get("ts")),
                   level=entry["level"].upper(), raw=text)


def _says(msg: str, value: str) -> bool:
    """Whether ``value`` stands in ``msg`` as a whole word ("2" is not in "2.13.0")."""
    return re.search(rf"(?<![\w.+-]){re.escape(value)}(?![\w.+-])", msg) is not None


_STAMP = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?")


def event_time(value: Any) -> str | None:
    """``HH:MM:SS`` in this machine's time zone from an ISO or ACA stamp (``2026-12-07 10:56:57
    +0000 UTC``); a stamp without a zone is shown as written; None when it is not a stamp."""
    from datetime import datetime

    m = _STAMP.match(str(value or "").strip())
    if m is None:
        return None
    day, clock, zone = m.groups()
    if zone is None:
        return clock
    zone = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{day}T{clock}{zone}").astimezone().strftime("%H:%M:%S")
    except ValueError:
        return None


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _auth_token(client: Any, rg: str, name: str) -> str:
    auth = client.container_apps.get_auth_token(rg, name)
    token = pick(auth, "properties", "token") or pick(auth, "token")
    if not token:
        raise AitkError(f"Azure returned no log-stream token for {name}.")
    register_secret(str(token))
    return str(token)


def _system_stream(session: "OperationContext", config: InferenceConfig) -> tuple[list[tuple[str, str]], str]:
    """[("system", eventStreamEndpoint)], auth token -- blocking."""
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    rg, name = config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME
    app = client.container_apps.get(rg, name)
    endpoint = pick(app, "properties", "event_stream_endpoint")
    if not endpoint:
        raise AitkError(f"Container app {name} has no system log stream (eventStreamEndpoint) yet.",
                        "it appears once the app is provisioned")
    return [("system", str(endpoint))], _auth_token(client, rg, name)


def _streams(session: "OperationContext", config: InferenceConfig) -> tuple[list[tuple[str, str]], str]:
    """[(replica name, logStreamEndpoint)], auth token -- blocking."""
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    rg, name = config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME
    app = client.container_apps.get(rg, name)
    # Microsoft's own ContainerApps_Get example has only latestReadyRevisionName: fall back to it.
    revision = latest_revision_name(rest_json(app))
    if not revision:
        raise AitkError(f"Container app {name} has no revision yet.", "provision first")
    replicas = pick(client.container_apps_revision_replicas.list_replicas(rg, name, revision), "value",
                    default=[]) or []
    streams = []
    for replica in replicas:
        for container in pick(replica, "properties", "containers", default=[]) or []:
            endpoint = pick(container, "log_stream_endpoint")
            if endpoint:
                streams.append((short_replica(str(pick(replica, "name", default="replica"))), str(endpoint)))
                break
    if not streams:
        state = _revision_state(client, rg, name, revision)
        if state is not None and state.failed:
            raise AitkError(f"No replica of {name} is running: {state.sentence()}",
                            "the system log says what the platform tried: `aitk logs --system`")
        raise AitkError(f"No replica of {name} is running, so there are no logs to show.",
                        "the app scales to zero when idle; send a request (e.g. `aitk chat hello`) or "
                        "`aitk deploy` to start one")
    return streams, _auth_token(client, rg, name)


def _revision_state(client: Any, rg: str, name: str, revision: str) -> RevisionState | None:
    try:
        return revision_state(rest_json(client.container_apps_revisions.get_revision(rg, name, revision)))
    except Exception:  # noqa: BLE001 - only words the message
        return None


async def _pump(session: "OperationContext", source: str, url: str, token: str, follow: bool, tail_lines: int,
                queue: asyncio.Queue, kind: LogKind = "console") -> None:
    import httpx

    sep = "&" if "?" in url else "?"
    output = "json" if kind == "system" else "text"
    full = f"{url}{sep}follow={'true' if follow else 'false'}&output={output}&tailLines={int(tail_lines)}"
    try:
        timeout = httpx.Timeout(30.0, read=None if follow else 30.0)
        from .health import tls_verify

        async with httpx.AsyncClient(verify=tls_verify(session), timeout=timeout) as client:
            async with client.stream("GET", full, headers={"Authorization": f"Bearer {token}"}) as r:
                if r.status_code != 200:
                    body = (await r.aread()).decode("utf-8", "replace")[:300]
                    await queue.put(Failed(f"The log stream of {source} answered HTTP {r.status_code}.",
                                           redact(body) or None))
                    return
                async for line in r.aiter_lines():
                    text = redact(line.rstrip("\r\n"))
                    if kind == "system":
                        if text.strip():
                            await queue.put(system_event_line(text))
                        continue
                    await queue.put(console_line(text, source))
    except httpx.HTTPError as e:
        await queue.put(Failed(f"The log stream of {source} was interrupted.", redact(f"{type(e).__name__}: {e}")))
    finally:
        await queue.put(_END)


async def replica_logs(session: "OperationContext", config: InferenceConfig, *, follow: bool = True,
                       tail_lines: int = 100, kind: LogKind = "console") -> AsyncIterator[Event]:
    """LogLine per line of the replicas' console output, or of the app's system log
    (``kind="system"``); Failed when the stream cannot be opened or breaks."""
    if kind not in ("console", "system"):
        yield Failed(f"There is no {kind!r} log; the kinds are console and system.", config_error=True)
        return
    tail_lines = min(max(int(tail_lines), 0), 10_000)  # ACA's own cap is lower; never an absurd query
    try:
        config.require(*APP_KEYS)
        streams, token = await asyncio.to_thread(_system_stream if kind == "system" else _streams, session, config)
    except Exception as e:  # noqa: BLE001
        yield failed(e, f"open the {kind} logs")
        return
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    tasks = [asyncio.ensure_future(_pump(session, src, url, token, follow, tail_lines, queue, kind))
             for src, url in streams]
    try:
        open_streams = len(tasks)
        while open_streams:
            item = await queue.get()
            if item is _END:
                open_streams -= 1
                continue
            yield item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
