"""Endpoint health, app status and the app's API key.

``/health`` answers 503 while the model loads and 200 when it serves; anything else
(connection refused, TLS not up yet, 502/504 from the ingress while no replica runs) is
reported as it is, once per probe, so the user sees a cold start progressing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..config.inference_config import APP_KEYS, InferenceConfig
from ..errors import AitkError, redact, register_secret
from ..events import HealthWait
from .models import AppStatus, enum_text, pick
from .operate import rest_json
from .revision_state import latest_revision_name, revision_state
from .sdkerrors import app_not_found, describe

if TYPE_CHECKING:
    from .context import OperationContext

API_KEY_SECRET = "inference-api-key"


async def probe(client: Any, base_url: str) -> tuple[str, str | None]:
    """One GET {base_url}/health -> ("ok" | "loading" | "HTTP 502" | "unreachable", detail).

    Asked and read by :meth:`aitk_tui.chat.client.ChatClient.health` (the one place that
    probes health; the chat's waking path uses it too) over this key-less ``client``; this
    only words its answer for deploy's wait and the status views.
    """
    from ..chat.client import ChatClient

    async with ChatClient(base_url, None, http=client) as chat:
        h = await chat.health()
    if h.ok:
        return "ok", None
    if h.http_status is None:
        why = h.detail or h.message or "no answer"
        return "unreachable", redact(f"{h.transport}: {why}" if h.transport else why)[:300]
    detail = redact(h.detail or h.message) or None
    if h.http_status == 503:
        return "loading", detail
    return f"HTTP {h.http_status}", detail


def tls_verify(session: "OperationContext") -> Any:
    """What httpx should trust: the local cloud's CA when there is one, else the system's."""
    from ..endpoints import tls_verify as verify

    return verify(session.endpoints.verify)


def http_client(session: "OperationContext", timeout_s: float = 10.0) -> Any:
    import httpx

    return httpx.AsyncClient(verify=tls_verify(session), timeout=timeout_s, follow_redirects=True)


async def wait_healthy(session: "OperationContext", base_url: str | None, *, timeout_s: float,
                       interval_s: float | None = None) -> AsyncIterator[HealthWait]:
    """HealthWait per probe until one says "ok" (the last event) or ``timeout_s`` passes."""
    if not base_url:
        yield HealthWait("unreachable", 0.0, "no endpoint in inference.config.json")
        return
    interval = session.health_interval_s if interval_s is None else interval_s
    start = time.monotonic()
    async with http_client(session, timeout_s=min(10.0, max(2.0, interval * 4))) as client:
        while True:
            status, detail = await probe(client, base_url)
            elapsed = round(time.monotonic() - start, 1)
            yield HealthWait(status, elapsed, detail)
            if status == "ok" or elapsed >= timeout_s:
                return
            await asyncio.sleep(min(interval, max(0.0, timeout_s - elapsed)))


def _app_status_sync(session: "OperationContext", config: InferenceConfig) -> dict[str, Any]:
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    app = client.container_apps.get(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)
    props = pick(app, "properties")
    revision = latest_revision_name(rest_json(app))
    replicas = None
    revision_health = None
    state = None
    if revision:
        try:
            rev = client.container_apps_revisions.get_revision(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME,
                                                               revision)
            # The REST JSON, not the model's attributes: Azure's ActivationFailed comes with a
            # runningStateDetails that the spec (and so the model) does not know.
            state = revision_state(rest_json(rev))
            replicas = state.replicas
            revision_health = state.health_state
        except Exception:  # noqa: BLE001 - the count is a nicety
            replicas = None
    min_replicas = pick(props, "template", "scale", "min_replicas")
    fqdn = pick(props, "configuration", "ingress", "fqdn")
    return {
        "name": str(pick(app, "name", default=config.ACA_APP_NAME)),
        "endpoint": InferenceConfig(ACA_APP_ENDPOINT=str(fqdn)).endpoint_url if fqdn else config.endpoint_url,
        "provisioning_state": enum_text(pick(props, "provisioning_state")) or "Unknown",
        "running_state": enum_text(pick(props, "running_status")),
        "latest_revision": str(revision) if revision else None,
        "replicas": int(replicas) if isinstance(replicas, (int, float)) else None,
        "revision_state": state.running_state if state else None,
        "revision_detail": (state.sentence() if state.phase in ("failed", "degraded") else None) if state else None,
        "revision_failed": bool(state and state.failed),
        "_scales_to_zero": min_replicas in (0, None),  # ACA default: 0
        "_revision_health": revision_health,
    }


async def app_status(session: "OperationContext", config: InferenceConfig) -> AppStatus:
    config.require(*APP_KEYS)
    try:
        info = await asyncio.to_thread(_app_status_sync, session, config)
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"read the status of container app {config.ACA_APP_NAME}") from None
    healthy = None
    scales_to_zero, revision_health = info.pop("_scales_to_zero"), info.pop("_revision_health")
    # A request to a scaled-to-zero app wakes a GPU replica (minutes, and billed): only ask
    # /health when a replica is already running (or the count is unknown). And when the app
    # may scale to zero, not even then: a GET through the ingress is traffic, so a header that
    # probes every 20 s would keep the replica (and its GPU) awake for good. The platform's
    # own probe (the revision's health state) answers instead, as in the Endpoint view.
    if info["revision_failed"]:
        healthy = False  # ActivationFailed / Failed: no replica comes, and probing would only wait
    elif scales_to_zero and info["replicas"] != 0 and revision_health in ("Healthy", "Unhealthy"):
        healthy = revision_health == "Healthy"
    elif info["endpoint"] and info["replicas"] != 0 and not scales_to_zero:
        async with http_client(session, timeout_s=5.0) as client:
            status, _ = await probe(client, info["endpoint"])
        healthy = status == "ok"
    return AppStatus(healthy=healthy, **info)


def _check_destination(session: "OperationContext", config: InferenceConfig, endpoint: str | None,
                       allow_insecure_http: bool) -> None:
    """Refuse (before reading the secret) to hand the app's key to anything but its own endpoint."""
    from ..chat.keys import key_destination_problem
    from .sdkerrors import InputError

    target = endpoint or config.endpoint_url
    if not target:
        raise InputError("There is no endpoint to send the API key to.", "ACA_APP_ENDPOINT is empty")
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    app = client.container_apps.get(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)
    fqdn = pick(app, "properties", "configuration", "ingress", "fqdn")
    if not fqdn:
        raise InputError(f"Container app {config.ACA_APP_NAME} has no ingress, so its API key has nowhere to go.")
    problem = key_destination_problem(target, app_fqdn=str(fqdn), allow_insecure_http=allow_insecure_http)
    if problem:
        raise InputError(f"The API key of {config.ACA_APP_NAME} was not sent: {problem}.",
                         "fix ACA_APP_ENDPOINT in infra/inference.config.json (or --endpoint), or pass the key of "
                         "that endpoint yourself (AITK_API_KEY)")


def read_api_key_secret(apps_client: Any, resource_group: str, app_name: str) -> str | None:
    """The app's ``inference-api-key`` secret (registered for redaction at once), None when
    the app has none; SDK errors (app not found...) are the caller's to judge. The one place
    that reads it: ``aitk chat``/``key`` and re-provisioning (which keeps the key)."""
    collection = apps_client.container_apps.list_secrets(resource_group, app_name)
    for s in pick(collection, "value", default=[]) or []:
        value = pick(s, "value")
        if pick(s, "name") == API_KEY_SECRET and value:
            register_secret(str(value))
            return str(value)
    return None


def _api_key_sync(session: "OperationContext", config: InferenceConfig, endpoint: str | None = None,
                  allow_insecure_http: bool = False) -> str:
    _check_destination(session, config, endpoint, allow_insecure_http)
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    key = read_api_key_secret(client, config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)
    if key is not None:
        return key
    raise AitkError(f"Container app {config.ACA_APP_NAME} has no {API_KEY_SECRET} secret.",
                    "it was provisioned by another tool; re-provision with aitk, or pass --api-key")


async def api_key(session: "OperationContext", config: InferenceConfig, endpoint: str | None = None, *,
                  allow_insecure_http: bool = False) -> str:
    """The app's API key, for ``endpoint`` (default ACA_APP_ENDPOINT) only: it must be the
    app's own ingress (its fqdn) and https (loopback http when ``allow_insecure_http``)."""
    config.require(*APP_KEYS)
    try:
        return await asyncio.to_thread(_api_key_sync, session, config, endpoint, allow_insecure_http)
    except AitkError:
        raise
    except Exception as e:  # noqa: BLE001
        gone = app_not_found(e, config)
        raise gone or describe(e, f"read the API key of container app {config.ACA_APP_NAME}") from None


#: While waiting for /health, how often to ask whether the replica crash-loops (then the deploy
#: ends): every 5 s on the local cloud, every 30 s on Azure (6 probes; each look reads the
#: replicas and, while one is not ready, the log tails).
CRASH_CHECK_PROBES = 6


def crash_check_s(session: "OperationContext") -> float:
    return max(5.0, CRASH_CHECK_PROBES * session.health_interval_s)


async def crash_loop_reason(session: "OperationContext", config: InferenceConfig, *, min_restarts: int = 2,
                            since: float | None = None) -> str | None:
    """Why the new replica fails, once a replica created after ``since`` (the deploy's
    restart; older ones are the code it replaced) restarted ``min_restarts`` times without
    becoming ready: the sentence ``aitk status`` shows. None while it may still come up."""
    from datetime import datetime, timezone

    from .endpoint_status import read_endpoint_status

    def created(value: str | None) -> float | None:
        try:
            then = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
        return (then if then.tzinfo else then.replace(tzinfo=timezone.utc)).timestamp()

    try:
        st = await read_endpoint_status(session, config)
    except Exception:  # noqa: BLE001 - the status only explains; the wait goes on without it
        return None
    if not st.failure_reason:
        return None
    if min_restarts:
        fresh = [r for r in st.replicas if since is None or (created(r.created) or 0.0) >= since]
        if not any(r.restart_count >= min_restarts and not r.ready for r in fresh):
            return None
    return st.failure_reason
