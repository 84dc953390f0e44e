"""The palette's "Keep warm" and "Let it sleep" against the real local cloud: the container
app's min replicas change (read back through the SDK), and the palette says why they cannot
run before anything is provisioned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aitk_tui.project import Project
from aitk_tui.ui.app import create_app
from aitk_tui.ui.settings import UISettings
from aitk_tui.ui.widgets.status_header import StatusHeader
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy

from .conftest import settle

pytestmark = pytest.mark.timeout(120)


def _min_replicas(factory, out: dict) -> int:
    app = factory.container_apps(SUB).container_apps.get(out["RESOURCE_GROUP_NAME"], out["ACA_APP_NAME"])
    return app.as_dict()["properties"]["template"]["scale"]["minReplicas"]


async def test_keep_warm_then_let_it_sleep(local_cloud, local_factory, local_project, fixed_clock):
    from aitk_tui.cloud.session import CloudSession

    project = Project(Path(local_project))
    session = CloudSession.for_cloud(project, local_cloud.endpoints, local_cloud.credential())

    async def open_session(project, **kwargs):
        return session

    app = create_app(project, local=True, session_factory=open_session, clock=fixed_clock,
                     settings=UISettings.load())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.main.run_action("keep_warm")  # nothing provisioned yet: refused with the reason
        await settle(pilot)
        assert any("Not yet: provision first" in n.message for n in app._notifications)

        out = deploy(local_factory, "rg-ui", Path(local_project))
        (Path(local_project) / "infra/inference.config.json").write_text(json.dumps(out))
        app.reload_config()
        await settle(pilot)
        assert _min_replicas(local_factory, out) == 0

        header = lambda: str(app.query_one(StatusHeader).render())  # noqa: E731
        assert "GPU billing" not in header()
        await app.main.run_action("keep_warm")
        await settle(pilot)
        assert _min_replicas(local_factory, out) == 1
        assert any("a GPU replica stays on" in n.message for n in app._notifications)
        assert "GPU billing" in header()

        await app.main.run_action("let_sleep")
        await settle(pilot)
        assert _min_replicas(local_factory, out) == 0
        assert app.state.running is None
        assert "GPU billing" not in header()

        # Kept warm by someone else (the CLI): the next status check says so too.
        local_factory.container_apps(SUB).container_apps.begin_update(
            out["RESOURCE_GROUP_NAME"], out["ACA_APP_NAME"],
            {"properties": {"template": {"scale": {"minReplicas": 1}}}}).result()
        app.main.check_health(quiet=True)
        await settle(pilot)
        assert "GPU billing" in header()
