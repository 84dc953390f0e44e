"""Scale to zero on the local cloud, and a chat that wakes the sleeping replica.

Driven through the real SDK clients (provision, deploy, scale, revisions) and, for the
chat, the real inference server process on the tiny model: a min-0 app stops its replica
after the idle period (1.5 s here), its revision says ``ScaledToZero`` with 0 replicas, the
next request starts a replica while the ingress holds it, and keep-warm never stops it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from contextlib import aclosing
from pathlib import Path

import pytest

from aitk_tui.chat.client import ChatClient, Delta, Finished
from aitk_tui.chat.wake import wake
from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.cloud.operate import ScaleRequest, scale
from aitk_tui.cloud.session import CloudSession
from aitk_tui.events import Awake, Done, Waking
from aitk_tui.local.system_log import read_events
from aitk_tui.project import Project
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import pid_alive, upload_stand_in, wait_for

from .deploy_helpers import deploy_all, provisioned

IDLE_S = 1.5


def _revision(factory: ClientFactory, config):
    apps = factory.container_apps(SUB)
    app = apps.container_apps.get(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)
    return apps.container_apps_revisions.get_revision(config.RESOURCE_GROUP_NAME, app.name, app.latest_revision_name)


def _asleep(factory: ClientFactory, config) -> bool:
    rev = _revision(factory, config)
    return rev.running_state == "ScaledToZero" and rev.replicas == 0


def _events(cloud, config) -> list[str]:
    app_id = (f"/subscriptions/{SUB}/resourceGroups/{config.RESOURCE_GROUP_NAME}"
              f"/providers/Microsoft.App/containerApps/{config.ACA_APP_NAME}")
    return [f"{e['Reason']}: {e['Msg']}" for e in read_events(cloud.replicas.system_log_path(app_id))]


def _get(cloud, url: str, timeout: float = 60) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=cloud.ca_bundle)
    with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
        return r.status, json.loads(r.read())


async def _scale(session: CloudSession, config, **values) -> None:
    events = [e async for e in scale(session.factory, config, ScaleRequest(**values))]
    assert isinstance(events[-1], Done), events[-1]


@pytest.mark.timeout(150)
def test_a_chat_wakes_a_replica_scaled_to_zero(make_local_cloud, local_project, tiny_model, monkeypatch, capsys):
    """The whole path: the real server sleeps after 1.5 s idle; a chat sees "waking" with the
    elapsed time and a replica log line, then gets its answer; so does `aitk chat`."""
    cloud = make_local_cloud(demo_dir=tiny_model.model_dir.parent, idle_s=IDLE_S)
    session = CloudSession.for_cloud(Project(Path(local_project)), cloud.endpoints, cloud.credential())

    async def go() -> None:
        config = await provisioned(session)
        events = await deploy_all(session, config, restart=True, wait=True, health_timeout_s=90)
        assert isinstance(events[-1], Done), events[-1]
        await asyncio.to_thread(wait_for, lambda: _asleep(session.factory, config), 30, what="scale to zero")
        status = await session.status(config)
        assert status.replicas == 0 and status.healthy is None  # asking /health would wake it
        assert any(e.startswith("ScaledToZero: Scaled to zero after ") for e in _events(cloud, config))

        key = await session.api_key(config)
        async with ChatClient(config.endpoint_url, key, verify=cloud.ca_bundle) as client:
            seen: list = []
            async with aclosing(wake(client, logs=lambda: session.replica_logs(config, tail_lines=5),
                                     interval_s=0.3, tick_s=0.2)) as events:
                async for event in events:
                    seen.append(event)
            waking = [e for e in seen if isinstance(e, Waking)]
            assert waking and isinstance(seen[-1], Awake), seen
            assert waking[-1].elapsed_s > waking[0].elapsed_s >= 0
            assert waking[0].state in ("asleep", "loading", "unreachable")
            lines = [e.log_line for e in waking if e.log_line]
            assert lines, "no replica log line was shown while waking"
            assert not any("/health" in line for line in lines)  # probe access lines are left out
            reply = [e async for e in client.stream_chat([{"role": "user", "content": "hello"}], max_tokens=8)]
        assert "".join(e.text for e in reply if isinstance(e, Delta))
        assert isinstance(reply[-1], Finished)
        assert any(e.startswith("ScalingUp: Starting a replica for an incoming request") for e in _events(cloud, config))
        assert not _asleep(session.factory, config)
        # The header reads the status every few seconds: with min 0 that must not count as
        # traffic (a GET /health through the ingress would keep the GPU replica awake for good).
        healthy_seen = False
        deadline = time.monotonic() + 30
        while sum("ScaledToZero:" in e for e in _events(cloud, config)) < 2:
            assert time.monotonic() < deadline, "reading the status kept the replica awake"
            status = await session.status(config)
            healthy_seen = healthy_seen or status.healthy is True  # the platform's probe answers
            await asyncio.sleep(0.3)
        assert healthy_seen

    asyncio.run(go())

    # `aitk chat` on the sleeping app: the waking status on stderr, the answer alone on stdout.
    from aitk_tui.cli import main
    from aitk_tui.local import daemon

    monkeypatch.setattr(daemon, "ensure_running", lambda state_dir, **kw: daemon.LocalCloudInfo(
        url=cloud.url, ca_bundle=cloud.ca_bundle, pid=0, endpoints=cloud.endpoints, state_dir=cloud.state_dir))
    monkeypatch.delenv("AITK_API_KEY", raising=False)
    capsys.readouterr()
    rc = main(["--project", str(local_project), "chat", "hello", "--local", "--max-tokens", "8"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "waking the replica… " in err and "the replica is awake after" in err, err
    assert out.strip() and "waking" not in out


@pytest.mark.timeout(90)
def test_keep_warm_never_sleeps_and_a_held_request_wakes_min_0(make_local_cloud, local_project, tiny_model):
    """With min 1 the replica outlives many idle periods; back at min 0 it sleeps, and a
    plain request that arrives then is held by the ingress until a replica answers it."""
    cloud = make_local_cloud(demo_dir=tiny_model.model_dir.parent, idle_s=IDLE_S)  # no demo model to build
    session = CloudSession.for_cloud(Project(Path(local_project)), cloud.endpoints, cloud.credential())

    async def go() -> None:
        config = await provisioned(session)
        key = session.factory.storage(SUB).storage_accounts.list_keys(
            config.RESOURCE_GROUP_NAME, config.STORAGE_ACCOUNT_NAME).as_dict()["keys"][0]["value"]
        upload_stand_in(session.factory.share(config.STORAGE_ACCOUNT_NAME, config.FILE_SHARE_NAME, key))
        await _scale(session, config, min_replicas=1)  # a new revision: the stand-in starts
        health = f"{config.endpoint_url}/health"
        first = await asyncio.to_thread(wait_for, lambda: _try_get(cloud, health), 30, what="the stand-in")
        await asyncio.sleep(IDLE_S * 3)
        rev = _revision(session.factory, config)
        assert rev.running_state == "Running" and rev.replicas == 1
        assert pid_alive(first["pid"])
        assert not any("ScaledToZero" in e for e in _events(cloud, config))

        await _scale(session, config, min_replicas=0)
        await asyncio.to_thread(wait_for, lambda: _asleep(session.factory, config), 30, what="scale to zero")
        assert not pid_alive(first["pid"]) or not _pid_is_replica(first["pid"])
        started = time.monotonic()
        status, body = await asyncio.to_thread(_get, cloud, health)  # held, not refused
        assert status == 200 and body["pid"] != first["pid"]
        assert time.monotonic() - started < 30
        assert not _asleep(session.factory, config)

    asyncio.run(go())


def _try_get(cloud, url: str):
    try:
        return _get(cloud, url, timeout=5)[1]
    except OSError:
        return None


def _pid_is_replica(pid: int) -> bool:
    try:
        return "inference_server" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False
