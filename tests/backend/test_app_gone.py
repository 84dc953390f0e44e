"""After the container app is torn down, chatting says it is gone and to provision, in both
faces: the wake path stopped waiting for a replica of an app that no longer exists (it said
"asleep, send again shortly"), and the CLI's key lookup said only "not found"."""

from __future__ import annotations

import pytest

from aitk_tui.chat.client import ChatError, HealthStatus
from aitk_tui.chat.wake import wake
from aitk_tui.errors import AppGone
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB

from .deploy_helpers import provisioned


class Asleep:
    """An ingress that does not answer: what the endpoint of a deleted app looks like."""

    async def health(self, *, timeout=None) -> HealthStatus:
        return HealthStatus(False, "asleep", "the endpoint is asleep or starting", transport="ConnectError")


async def test_a_torn_down_app_stops_the_wake_and_the_key_lookup_naming_provision(session):
    config = await provisioned(session)
    apps = session.factory.container_apps(SUB)
    apps.container_apps.begin_delete(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME).result()

    with pytest.raises(AppGone) as gone:
        await session.api_key(config)
    assert config.ACA_APP_NAME in gone.value.message and "provision" in gone.value.detail
    assert gone.value.config_error  # the CLI exits 2: the user's to fix

    with pytest.raises(ChatError) as stopped:
        async for _event in wake(Asleep(), platform=lambda: session.revision_failure(config), tick_s=0.05,
                                 timeout_s=30):
            pass
    assert "does not exist" in stopped.value.message and "provision" in (stopped.value.detail or "")


async def test_a_deploys_restart_makes_a_new_replica_whose_restarts_start_at_zero(session):
    """A replica that crash-looped before the first deploy (no code on the share yet) is a new
    replica after the deploy's revision restart, as on ACA: its count does not carry over (the
    Endpoint view said "keeps restarting (5 restarts)" of a healthy keep-warm replica)."""
    import asyncio

    from aitk_tui.events import Done

    from .deploy_helpers import deploy_all

    config = await provisioned(session)
    # Nothing deployed: the container's deps step fails and it restarts, backing off 1 s, then
    # 2 s. A deadline, not a count of polls: each poll is a status call, slower on a busy machine.
    deadline = asyncio.get_running_loop().time() + 90
    while asyncio.get_running_loop().time() < deadline:
        st = await session.endpoint_status(config)
        if st.replicas and st.replicas[0].restart_count >= 2:
            break
        await asyncio.sleep(0.1)
    assert st.replicas and st.replicas[0].restart_count >= 2
    events = await deploy_all(session, config, restart=True)
    assert isinstance(events[-1], Done), events[-1]
    st = await session.endpoint_status(config)
    ready = [r for r in st.replicas if r.ready]
    assert ready and all(r.restart_count == 0 for r in ready), st.replicas
