"""The Endpoint view's data: the container app, its revisions and replicas, scale, health,
cost, and -- when a replica fails to start -- why, in one sentence.

Read through the real SDK (``container_apps.get``, ``container_apps_revisions.list_revisions``,
``container_apps_revision_replicas.list_replicas``), the scale and cost of
:mod:`.operate`, the one health prober of :mod:`.health`, and, only when something looks
wrong, the tails of the system and console logs of :mod:`.logs` (the platform says *that*
a replica died, its own output says *why*). No Textual; both ``aitk status`` and the TUI's
Endpoint tab render :class:`EndpointStatus`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..config.inference_config import APP_KEYS, InferenceConfig
from ..events import LogLine
from .operate import ScaleSettings, app_json, profile_and_cost, rest_json, settings_of
from .prices import CostEstimate
from .revision_state import RevisionState, latest_revision_name
from .sdkerrors import app_not_found, describe

if TYPE_CHECKING:
    from .context import OperationContext

LOG_TAIL = 60  # lines of each log read to explain a failure


@dataclass(frozen=True)
class RevisionInfo:
    name: str
    active: bool
    traffic: int | None  # percent of the app's traffic
    created: str | None  # ISO time
    replicas: int | None
    running_state: str | None  # Running / Activating / Failed / Stopped / ScaledToZero / ActivationFailed...
    health_state: str | None
    provisioning_error: str | None
    running_state_details: str | None = None  # Azure's revision-level why, e.g. "Deployment Progress Deadline..."

    @property
    def state(self) -> RevisionState:
        return RevisionState(self.name, self.running_state, self.running_state_details,
                             provisioning_error=self.provisioning_error, replicas=self.replicas,
                             health_state=self.health_state)


@dataclass(frozen=True)
class ReplicaInfo:
    name: str
    revision: str
    running_state: str | None  # Running / NotRunning / Unknown
    ready: bool
    restart_count: int
    created: str | None
    details: str | None  # runningStateDetails of the replica or its container


@dataclass(frozen=True)
class EndpointStatus:
    """What ``aitk status`` prints and the Endpoint tab shows. ``provisioned`` False: the app
    does not exist (never provisioned, or ``aitk down``); every other field is then empty."""

    app: str
    provisioned: bool
    provisioning_state: str | None = None
    running_state: str | None = None
    endpoint: str | None = None
    latest_revision: str | None = None
    revisions: tuple[RevisionInfo, ...] = ()
    replicas: tuple[ReplicaInfo, ...] = ()
    scale: ScaleSettings | None = None
    profile: str | None = None
    cost: CostEstimate | None = None
    # ok | loading | starting | asleep | failed | unreachable | HTTP nnn | not provisioned | unknown
    health: str = "unknown"
    health_detail: str | None = None
    failure_reason: str | None = None
    read_at: float = 0.0  # epoch seconds

    @property
    def ready_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.ready)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["read_at"] = iso(self.read_at)
        if self.scale is not None:
            data["scale"]["keeps_warm"] = self.scale.keeps_warm
        return data


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(created: str | None, now: float) -> str:
    """``2025-06-01T10:00:00Z`` -> ``3m12s`` (k9s' style), ``-`` when unknown."""
    if not created:
        return "-"
    try:
        then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    s = max(0, int(now - then.timestamp()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# -- reading the app --------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(getattr(value, "value", value))


def _revision(r: dict[str, Any]) -> RevisionInfo:
    p = r.get("properties") or {}
    err = p.get("provisioningError")
    return RevisionInfo(name=str(r.get("name") or "?"), active=bool(p.get("active")),
                        traffic=_int(p.get("trafficWeight")), created=_text(p.get("createdTime")),
                        replicas=_int(p.get("replicas")), running_state=_text(p.get("runningState")),
                        health_state=_text(p.get("healthState")),
                        provisioning_error=str(err)[:500] if err else None,
                        running_state_details=_text(p.get("runningStateDetails")))


def _replica(r: dict[str, Any], revision: str) -> ReplicaInfo:
    p = r.get("properties") or {}
    containers = p.get("containers") or [{}]
    c = containers[0] if isinstance(containers[0], dict) else {}
    details = _text(c.get("runningStateDetails")) or _text(p.get("runningStateDetails"))
    return ReplicaInfo(name=str(r.get("name") or "?"), revision=revision, running_state=_text(p.get("runningState")),
                       ready=all(bool(x.get("ready")) for x in containers if isinstance(x, dict)),
                       restart_count=max((_int(x.get("restartCount")) or 0 for x in containers if isinstance(x, dict)),
                                         default=0),
                       created=_text(p.get("createdTime")), details=details)


def _read_sync(factory: Any, config: InferenceConfig) -> dict[str, Any] | None:
    app = app_json(factory, config)
    if app is None:
        return None
    client = factory.container_apps(config.SUBSCRIPTION_ID)
    rg, name = config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME
    revisions = [_revision(rest_json(r)) for r in client.container_apps_revisions.list_revisions(rg, name)]
    revisions.sort(key=lambda r: r.created or "", reverse=True)
    replicas: list[ReplicaInfo] = []
    for rev in revisions:
        if not rev.active:
            continue  # an inactive revision runs no replica; asking would only cost a call
        listing = rest_json(client.container_apps_revision_replicas.list_replicas(rg, name, rev.name))
        replicas += [_replica(r, rev.name) for r in listing.get("value") or []]
    settings = settings_of(app)
    profile, cost = profile_and_cost(factory, config, app, settings)
    return {"app": app, "revisions": revisions, "replicas": replicas, "settings": settings, "profile": profile,
            "cost": cost}


async def read_endpoint_status(session: "OperationContext", config: InferenceConfig, *,
                               explain: bool = True) -> EndpointStatus:
    """The app's status now; ``provisioned=False`` when it does not exist. ``explain``: read
    the log tails to name the cause when a replica fails (skipped while all is well)."""
    config.require(*APP_KEYS)
    try:
        raw = await asyncio.to_thread(_read_sync, session.factory, config)
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"read the status of container app {config.ACA_APP_NAME}") from None
    now = time.time()
    if raw is None:
        return EndpointStatus(config.ACA_APP_NAME, False, health="not provisioned", read_at=now)
    app, revisions, replicas = raw["app"], raw["revisions"], raw["replicas"]
    props = app.get("properties") or {}
    fqdn = ((props.get("configuration") or {}).get("ingress") or {}).get("fqdn")
    endpoint = InferenceConfig(ACA_APP_ENDPOINT=str(fqdn)).endpoint_url if fqdn else config.endpoint_url
    health, detail = await _health(session, endpoint, revisions, replicas, raw["settings"])
    status = EndpointStatus(
        app=str(app.get("name") or config.ACA_APP_NAME), provisioned=True,
        provisioning_state=_text(props.get("provisioningState")), running_state=_text(props.get("runningStatus")),
        endpoint=endpoint, latest_revision=latest_revision_name(app), revisions=tuple(revisions),
        replicas=tuple(replicas), scale=raw["settings"], profile=raw["profile"], cost=raw["cost"], health=health,
        health_detail=detail, read_at=now)
    if explain and looks_wrong(status):
        system, console = await _log_tails(session, config)
        status = dataclasses.replace(status, failure_reason=diagnose(status, system, console))
    return status


def serving_revisions(revisions: Sequence[RevisionInfo]) -> list[RevisionInfo]:
    """The revisions requests go to: the active ones with traffic (all active ones when no
    traffic is reported), newest first."""
    active = [r for r in revisions if r.active]
    return [r for r in active if (r.traffic or 0) > 0] or active


def blocking_failure(revisions: Sequence[RevisionInfo]) -> RevisionInfo | None:
    """The failed revision when every revision that takes requests has failed (ActivationFailed,
    Failed): no replica will come, however long one waits; None otherwise."""
    serving = serving_revisions(revisions)
    if serving and all(r.state.failed for r in serving):
        return serving[0]
    return None


async def revision_failure(session: "OperationContext", config: InferenceConfig) -> str | None:
    """For the chat's wake path: one sentence when no replica will come (every revision that
    takes requests failed), else None. One ARM read (the revisions list)."""
    config.require("SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "ACA_APP_NAME")

    def read() -> RevisionInfo | None:
        client = session.factory.container_apps(config.SUBSCRIPTION_ID)
        revisions = [_revision(rest_json(r)) for r in
                     client.container_apps_revisions.list_revisions(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)]
        revisions.sort(key=lambda r: r.created or "", reverse=True)
        return blocking_failure(revisions)

    try:
        failed = await asyncio.to_thread(read)
    except Exception as e:  # noqa: BLE001
        gone = app_not_found(e, config)
        raise gone or describe(e, f"read the revisions of container app {config.ACA_APP_NAME}") from None
    return failed.state.sentence() if failed is not None else None


async def _health(session: "OperationContext", endpoint: str | None, revisions: Sequence[RevisionInfo],
                  replicas: Sequence[ReplicaInfo], settings: ScaleSettings) -> tuple[str, str | None]:
    if not endpoint:
        return "unknown", "the app has no ingress"
    failed = blocking_failure(revisions)
    if failed is not None:
        # Not asleep: a request would not wake a replica, and the chat would wait for nothing.
        return "failed", failed.state.sentence()
    if not replicas and any(r.state.phase == "starting" for r in serving_revisions(revisions)):
        starting = next(r for r in serving_revisions(revisions) if r.state.phase == "starting")
        return "starting", f"a replica of revision {starting.name} is being started ({starting.running_state})"
    if not replicas:
        # A request to a scaled-to-zero app wakes a GPU replica (minutes, and billed): never probe it.
        return "asleep", "no replica is running; the next request starts one"
    if settings.min_replicas == 0 and any(r.ready for r in replicas):
        # A GET through the ingress is traffic: probing every few seconds would keep the replica
        # (and its GPU) from ever scaling to zero. The platform's own probe passed: that is the answer.
        return "ok", "the replica passed the platform's health probe"
    from .health import http_client, probe

    async with http_client(session, timeout_s=5.0) as client:
        return await probe(client, endpoint)


async def _log_tails(session: "OperationContext", config: InferenceConfig) -> tuple[list[LogLine], list[str]]:
    from .logs import replica_logs

    async def tail(kind: str) -> list[LogLine]:
        lines: list[LogLine] = []
        try:
            async for ev in replica_logs(session, config, follow=False, tail_lines=LOG_TAIL, kind=kind):  # type: ignore[arg-type]
                if isinstance(ev, LogLine):
                    lines.append(ev)
        except Exception:  # noqa: BLE001 - the logs only explain; the status stands without them
            pass
        return lines

    system, console = await asyncio.gather(tail("system"), tail("console"))
    return system, [ln.text for ln in console if not ln.probe]


# -- explaining a failure ------------------------------------------------------------------------
def looks_wrong(st: EndpointStatus) -> bool:
    """Worth reading the logs for: a replica restarted or is not ready, a revision failed,
    or replicas were asked for and none came."""
    if st.health == "ok":
        return False
    if any(r.restart_count > 0 or not r.ready for r in st.replicas):
        return True
    if any(r.active and (r.state.phase in ("failed", "degraded") or r.provisioning_error) for r in st.revisions):
        return True
    wanted = st.scale is not None and st.scale.min_replicas > 0
    return wanted and not st.replicas


_ASSIGN = re.compile(r"assign|schedul|quota|insufficient|capacity|no node|not enough", re.I)
_CREATE = re.compile(r"pull|image|mount|volume|create|secret", re.I)
_CRASH = re.compile(r"terminat|crash|back-?off|exit(ed)? (with )?code|restart", re.I)
_PROBE = re.compile(r"probe", re.I)
# A line of the replica's own output that names a cause: the server's "model load failed: ...",
# its start-up check ("inference_server: ..."), the last line of a traceback, or an error record.
_CAUSE = re.compile(r"(model load failed: .+|inference_server: .+|cannot start the replica: .+|"
                    r"\b[A-Z]\w*(?:Error|Exception|Exit): .+)")


# pip's own errors (the container's pip step): the line that names what could not be installed.
_PIP_CAUSE = re.compile(r"^ERROR: ((?:No matching distribution found for|Could not find a version that satisfies|"
                        r"Cannot install|Invalid requirement|Could not open requirements file|"
                        r"Could not install packages|Failed to build)\b.+)")


def console_cause(lines: Iterable[str]) -> str | None:
    """The last line of the console output that says why the process failed."""
    found = None
    for raw in lines:
        text = raw.strip()
        message = text
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            if isinstance(record, dict):
                message = str(record.get("msg") or record.get("message") or "")
                if str(record.get("level", "")).lower() in ("error", "critical") and message:
                    found = message
                    continue
        else:
            # "2025-06-01T10:00:00Z [aitk-local] cannot start ..." / "... ERROR name: ..."
            message = re.sub(r"^\S+Z \[aitk-local\] ", "", text)
        pip = _PIP_CAUSE.match(message)
        if pip:
            found = f"pip could not install the requirements: {pip.group(1).strip()}"
            continue
        m = _CAUSE.search(message)
        if m:
            # the local cloud's "cannot start the replica: X": the sentence's lead says that already
            found = m.group(1).strip().removeprefix("cannot start the replica: ")
            while found.endswith(")") and found.count(")") > found.count("("):
                found = found[:-1]  # "Error while finding module ... (ModuleNotFoundError: ...)"
    return found[:300] if found else None


def _sentence(lead: str, cause: str | None) -> str:
    cause = (cause or "").strip().rstrip(".")
    return f"{lead}: {cause}." if cause else f"{lead}."


def diagnose(st: EndpointStatus, system: Sequence[LogLine], console: Sequence[str]) -> str | None:
    """One sentence saying why no replica serves, from the replica's state, the system log's
    warnings and the console's last error; None when nothing is wrong (or it is only starting)."""
    if st.health == "ok":
        return None
    warnings = [ln.text for ln in system if ln.warning]
    cause = console_cause(console)
    serving = any(r.ready for r in st.replicas)
    # Restarts of a replica that is ready again are history, not the reason it fails now.
    restarts = max((r.restart_count for r in st.replicas if not r.ready), default=0)
    crashing = restarts > 0 or (not serving and any(_CRASH.search(w) for w in warnings[-5:]))
    failed = blocking_failure(st.revisions)
    if failed is not None and (failed.running_state_details or not crashing):
        # Azure's words first (ActivationFailed: "Deployment Progress Deadline Exceeded. 0/1
        # replicas ready."), then what the replica's own output says about why.
        sentence = failed.state.sentence()
        return f"{sentence[:-1]}; {cause.rstrip('.')}." if cause and cause not in sentence else sentence
    if crashing:
        detail = cause or next((r.details for r in st.replicas if r.details), None) or (warnings[-1] if warnings else None)
        lead = "The replica keeps restarting" + (f" ({restarts} restarts)" if restarts > 1 else "")
        return _sentence(lead, detail)
    for w in reversed(warnings):
        reason = w.split(":", 1)[0]
        if _ASSIGN.search(w):
            return _sentence("No replica could be assigned", w.split(":", 1)[-1])
        if _CREATE.search(reason):
            return _sentence("The replica's container could not start", cause or w.split(":", 1)[-1])
        if _PROBE.search(reason) and not serving:
            return _sentence("The replica does not pass its health probe", cause or w.split(":", 1)[-1])
    failed_rev = next((r for r in st.revisions if r.active and (r.provisioning_error or r.state.phase == "degraded")),
                      None)
    if failed_rev is not None:
        return failed_rev.state.sentence()
    if cause and "load failed" in cause:  # the server answers 503 a while after a failed load, then exits
        return _sentence("The model failed to load", cause)
    if cause and st.health != "loading" and not serving:
        return _sentence("The replica is not ready", cause)  # ("loading": progressing; a logged error may be old)
    if st.scale is not None and st.scale.min_replicas > 0 and not st.replicas:
        return _sentence("No replica could be assigned", "none is listed although min replicas is "
                         f"{st.scale.min_replicas}")
    return None


def health_words(st: EndpointStatus) -> str:
    """The endpoint's health as the CLI and the TUI say it."""
    h = st.health
    if h == "ok":
        return "healthy"
    if h == "loading":
        return "starting: the server is loading the model (/health 503)"
    if h == "asleep":
        return "asleep: scaled to zero; the next request wakes a replica"
    if h == "failed":  # Azure's why is the "why" line when there is one; else it goes here
        detail = None if st.failure_reason else st.health_detail
        return "failed: no replica can start" + (f" ({detail})" if detail else "")
    if h == "starting":
        return "starting: " + (st.health_detail or "a replica is being started")
    if h == "not provisioned":
        return "not provisioned"
    if h == "unreachable":
        return "not answering" + (f" ({st.health_detail})" if st.health_detail else "")
    if h.startswith("HTTP"):
        return f"not serving ({h})"
    return h
