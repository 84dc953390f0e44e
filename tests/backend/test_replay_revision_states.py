"""Replay: the revision states Azure really reports, fed through the back-end with the real SDK
clients and only the azure-core transport replaced, and what the user is told.

The shapes: Microsoft's own ``ContainerApps_Get`` example (tests/azure_shapes/, which has
``latestReadyRevisionName`` and no ``latestRevisionName``), and the running states the spec's
enum lacks but Azure returns (Azure/azure-rest-api-specs#29102: ``ActivationFailed``,
``RunningAtMaxScale``; learn.microsoft.com/azure/container-apps/revisions#running-status:
Activating, ScaledToZero, Degraded), with the revision-level ``runningStateDetails``
"Deployment Progress Deadline Exceeded. 0/2 replicas ready.".
"""

from __future__ import annotations

import asyncio
import copy
import json
from contextlib import aclosing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl

from aitk_tui.chat.client import ChatError, HealthStatus
from aitk_tui.chat.wake import wake
from aitk_tui.events import Waking
from aitk_tui.cli.status import status_lines
from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.endpoints import AZURE
from aitk_tui.cloud.endpoint_status import health_words, read_endpoint_status
from aitk_tui.cloud.health import app_status
from aitk_tui.cloud.logs import replica_logs
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.events import Failed
from aitk_tui.ui.operations import health_from_status
from aitk_tui.ui.state import UIState
from aitk_tui.ui.widgets.status_header import health_label

SHAPES = Path(__file__).resolve().parents[1] / "azure_shapes"
SUB, RG, APP = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345", "rg", "testcontainerapp0"
READY_REV = "testcontainerapp0-pjxhsye"  # the example's latestReadyRevisionName
DEADLINE = "Deployment Progress Deadline Exceeded. 0/2 replicas ready."


# -- a minimal fake azure-core transport (the lead unifies it with tests/backend/replay.py) ---------
class _Response(HttpResponseImpl):
    def __init__(self, request: Any, status: int, body: Any) -> None:
        super().__init__(request=request, internal_response=None, status_code=status, reason="",
                         content_type="application/json", headers={"content-type": "application/json"},
                         stream_download_generator=None)
        self._content = json.dumps(body).encode() if body is not None else b""
        self._is_closed = self._is_stream_consumed = True


class Replay(HttpTransport):
    """Answers by (method, path suffix); anything else is ARM's 404. Records what was asked."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.routes, self.asked = routes, []

    def __enter__(self) -> "Replay":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> _Response:
        path = request.url.split("?", 1)[0]
        self.asked.append((request.method, path))
        for (method, suffix), (status, body) in self.routes.items():
            if method == request.method and path.lower().endswith(suffix.lower()):
                return _Response(request, status, body)
        return _Response(request, 404, {"error": {"code": "ResourceNotFound", "message": f"{path} was not found."}})


class _Credential:
    def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
        return AccessToken("replay-token", 2**31)

    def get_token_info(self, *scopes: str, **kw: Any) -> AccessTokenInfo:
        return AccessTokenInfo("replay-token", 2**31)


class _Factory(ClientFactory):
    """The real factory (real SDK clients), with only the transport replaced."""

    def __init__(self, transport: Replay) -> None:
        super().__init__(AZURE, _Credential())
        self.transport = transport

    def _mgmt_kwargs(self) -> dict[str, Any]:
        return {**super()._mgmt_kwargs(), "transport": self.transport, "retry_total": 0}


def _session(routes: dict) -> SimpleNamespace:
    return SimpleNamespace(factory=_Factory(Replay(routes)), endpoints=AZURE, health_timeout_s=5.0,
                           health_interval_s=1.0, poll_interval_s=0.1)


CONFIG = InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=RG, STORAGE_ACCOUNT_NAME="acct",
                         FILE_SHARE_NAME="share", ACA_APP_NAME=APP, ACA_APP_ENDPOINT=f"{APP}.example.io")


def _example_app() -> dict:
    body = json.loads((SHAPES / "ContainerApps_Get.2025-07-01.json").read_text())
    body.pop("_source")
    assert "latestRevisionName" not in body["properties"]  # as Microsoft wrote it
    return body


def _revision(state: str, details: str | None = None, replicas: int = 0, name: str = READY_REV) -> dict:
    props: dict[str, Any] = {"createdTime": "2025-06-01T10:00:00Z", "active": True, "replicas": replicas,
                             "trafficWeight": 100, "healthState": "Unhealthy" if "Fail" in state else "None",
                             "provisioningState": "Provisioned", "runningState": state}
    if details:
        props["runningStateDetails"] = details
    return {"id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/containerApps/{APP}/revisions/{name}",
            "name": name, "type": "Microsoft.App/containerApps/revisions", "properties": props}


def _routes(revision: dict, replicas: list[dict] | None = None) -> dict:
    base = f"/containerApps/{APP}"
    return {("GET", base): (200, _example_app()),
            ("GET", f"{base}/revisions"): (200, {"value": [revision]}),
            ("GET", f"{base}/revisions/{revision['name']}"): (200, revision),
            ("GET", f"{base}/revisions/{revision['name']}/replicas"): (200, {"value": replicas or []})}


# -- status (aitk status, the Endpoint tab) -------------------------------------------------------
def test_activation_failed_is_failed_not_asleep_and_says_azures_why():
    session = _session(_routes(_revision("ActivationFailed", DEADLINE)))
    st = asyncio.run(read_endpoint_status(session, CONFIG))
    assert st.health == "failed"  # was "asleep: the next request wakes a replica"
    assert st.latest_revision == READY_REV  # no latestRevisionName: the ready one, as deploy does
    assert health_words(st) == "failed: no replica can start"  # Azure's why is on the "why" line
    assert st.failure_reason == f"Revision {READY_REV} failed to activate (ActivationFailed): {DEADLINE}"
    quiet = asyncio.run(read_endpoint_status(session, CONFIG, explain=False))  # no "why": the health says it
    assert DEADLINE.rstrip(".") in health_words(quiet)
    text = "\n".join(status_lines(st, now=0))
    assert "asleep" not in text and "ActivationFailed" in text and "Deployment Progress Deadline" in text


def test_activating_without_replicas_is_starting_not_asleep():
    st = asyncio.run(read_endpoint_status(_session(_routes(_revision("Activating"))), CONFIG))
    assert st.health == "starting" and health_words(st).startswith("starting: a replica of revision")


def test_scaled_to_zero_is_asleep():
    routes = _routes(_revision("ScaledToZero"))
    routes[("GET", f"/containerApps/{APP}")][1]["properties"]["template"]["scale"]["minReplicas"] = 0
    st = asyncio.run(read_endpoint_status(_session(routes), CONFIG))
    assert st.health == "asleep" and st.failure_reason is None


def test_degraded_revision_names_azures_details():
    replica = {"name": f"{READY_REV}-5d8f9c-x7k2p", "properties": {
        "runningState": "NotRunning", "containers": [{"name": APP, "ready": False, "restartCount": 0}]}}
    why = "1/2 replicas are not ready: Container 'testcontainerapp0' was terminated with exit code '137'"
    st = asyncio.run(read_endpoint_status(_session(_routes(_revision("Degraded", why, 2), [replica])), CONFIG))
    assert st.revisions[0].running_state_details == why
    assert st.failure_reason == f"Revision {READY_REV} is degraded (Degraded): {why}."


def test_running_at_max_scale_is_not_a_failure():
    rev = _revision("RunningAtMaxScale", replicas=1)
    st = asyncio.run(read_endpoint_status(_session(_routes(rev)), CONFIG, explain=False))
    assert st.revisions[0].running_state == "RunningAtMaxScale" and st.health != "failed"


# -- the header ------------------------------------------------------------------------------------
def test_header_reads_the_ready_revision_and_shows_a_failed_one():
    session = _session(_routes(_revision("ActivationFailed", DEADLINE)))
    status = asyncio.run(app_status(session, CONFIG))
    assert status.latest_revision == READY_REV  # was None: the example has no latestRevisionName
    assert (status.revision_failed, status.healthy, status.revision_state) == (True, False, "ActivationFailed")
    assert DEADLINE in status.revision_detail
    assert health_from_status(status) == "failed"
    state = UIState(local=True, config=CONFIG, health=health_from_status(status))
    assert health_label(state) == ("✕ revision failed", "red")
    assert ("GET", f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/"
            f"containerApps/{APP}/revisions/{READY_REV}") in session.factory.transport.asked


# -- aitk logs ----------------------------------------------------------------------------------
def test_logs_fall_back_to_the_ready_revision_and_say_it_failed():
    session = _session(_routes(_revision("ActivationFailed", DEADLINE)))

    async def collect():
        return [e async for e in replica_logs(session, CONFIG, follow=False)]

    [event] = asyncio.run(collect())
    assert isinstance(event, Failed)
    assert "no revision" not in event.message  # was "has no revision yet": latestRevisionName is absent
    assert event.message == (f"No replica of {APP} is running: Revision {READY_REV} failed to activate "
                             f"(ActivationFailed): {DEADLINE}")
    asked = [path for _, path in session.factory.transport.asked]
    assert any(p.endswith(f"/revisions/{READY_REV}/replicas") for p in asked)


# -- the chat's wake path ---------------------------------------------------------------------------
class _Asleep:
    """An endpoint whose ingress holds every probe: /health cannot tell "coming" from "never"."""

    def __init__(self) -> None:
        self.calls = 0

    async def health(self, *, timeout=None) -> HealthStatus:
        self.calls += 1
        return HealthStatus(False, "asleep", "the endpoint is asleep or starting", 503)


def revision_failure(session, config):
    from aitk_tui.cloud.endpoint_status import revision_failure as ask  # (new: the wake path's question)

    return ask(session, config)


async def _wake_until_it_ends(session) -> tuple[list, BaseException | None]:
    events: list = []
    try:
        async with aclosing(wake(_Asleep(), platform=lambda: revision_failure(session, CONFIG), timeout_s=20,
                                 interval_s=0.02, tick_s=0.01, platform_every_s=0.05)) as stream:
            async for event in stream:
                events.append(event)
    except ChatError as e:
        return events, e
    return events, None


def test_the_wake_path_stops_and_says_why_when_the_revision_failed():
    events, error = asyncio.run(_wake_until_it_ends(_session(_routes(_revision("ActivationFailed", DEADLINE)))))
    assert error is not None and error.message == "the endpoint cannot wake: no replica can start"
    assert error.detail == f"Revision {READY_REV} failed to activate (ActivationFailed): {DEADLINE.rstrip('.')}"
    assert all(isinstance(e, Waking) for e in events) and len(events) < 200  # stopped, did not wait 20 s


@pytest.mark.parametrize("state", ["Activating", "ScaledToZero"])
def test_the_wake_path_keeps_waiting_while_a_replica_may_come(state):
    session = _session(_routes(_revision(state)))

    async def some_wakes():
        async with aclosing(wake(_Asleep(), platform=lambda: revision_failure(session, CONFIG), interval_s=0.02,
                                 tick_s=0.01, platform_every_s=0.02)) as stream:
            seen = []
            async for event in stream:
                seen.append(event)
                if len(seen) >= 30:
                    return seen

    seen = asyncio.run(some_wakes())
    assert len(seen) == 30 and all(isinstance(e, Waking) for e in seen)
    revisions_reads = [p for m, p in session.factory.transport.asked if p.endswith("/revisions")]
    assert len(revisions_reads) >= 2  # the platform was asked, and said nothing stops it


def test_a_newer_failed_revision_does_not_stop_one_that_serves():
    # Single revision mode keeps traffic on the old revision until the new one is ready.
    old = _revision("Running", replicas=1, name="testcontainerapp0-old")
    new = copy.deepcopy(_revision("ActivationFailed", DEADLINE))
    new["properties"].update(trafficWeight=0, createdTime="2025-06-02T10:00:00Z")
    session = _session({("GET", f"/containerApps/{APP}/revisions"): (200, {"value": [old, new]})})
    assert asyncio.run(revision_failure(session, CONFIG)) is None


def test_an_ingress_that_closes_at_once_still_gets_the_platforms_why():
    # Between a failed activation's restarts nothing is coming: an ingress may close the
    # connection instead of holding it. The wake path asks the platform before giving up.
    class Closed:
        async def health(self, *, timeout=None) -> HealthStatus:
            return HealthStatus(False, "asleep", "the endpoint is asleep or starting", transport="ConnectError")

    session = _session(_routes(_revision("ActivationFailed", DEADLINE)))

    async def run():
        async with aclosing(wake(Closed(), platform=lambda: revision_failure(session, CONFIG))) as stream:
            return [e async for e in stream]

    with pytest.raises(ChatError) as caught:
        asyncio.run(run())
    assert DEADLINE.rstrip(".") in caught.value.detail
