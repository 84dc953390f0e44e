"""The whole journey in the TUI against the real local cloud (real SDK clients over HTTPS,
real replica process running the inference server with the demo model):
subscription → new resource group → edit a parameter → provision → deploy → chat."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, Markdown

from aitk_tui.project import Project
from aitk_tui.ui.app import create_app
from aitk_tui.ui.settings import UISettings
from aitk_tui.ui.widgets.prompt import PromptArea
from aitk_tui.ui.widgets.status_header import StatusHeader

from .conftest import settle

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def local_ui(local_project, make_local_cloud, tiny_model):
    """The project and a session on an in-process local cloud (fixtures of tests/fixtures_local.py)."""
    from aitk_tui.cloud.session import CloudSession

    project = Project(local_project)
    # The session's tiny model (shared with the server tests) is served: no per-test build.
    cloud = make_local_cloud(project.local_cloud_dir, model_path=tiny_model.model_dir,
                             adapter_path=tiny_model.adapter_dir)
    session = CloudSession.for_cloud(project, cloud.endpoints, cloud.credential())

    async def open_session(project, **kwargs):
        return session

    return project, open_session


async def test_select_provision_deploy_chat_on_the_local_cloud(local_ui, fixed_clock):
    project, open_session = local_ui
    app = create_app(project, local=True, session_factory=open_session, clock=fixed_clock,
                     settings=UISettings.load())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        header = lambda: str(app.query_one(StatusHeader).render())  # noqa: E731
        assert "LOCAL CLOUD" in header() and app.state.signed_in

        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.subscription_id

        await pilot.press("f4")  # a fresh cloud has no group: the picker offers to create one
        await settle(pilot)
        app.screen.query_one("#picker-filter", Input).value = "rg-flow"
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        app.screen.query_one("#cg-name", Input).value = "rg-flow"
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.resource_group == "rg-flow" and "rg-flow" in header()

        await pilot.press("f7")
        await settle(pilot)
        app.main.params_form.editor("acaAppName").value = "aiapp-flow"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        params = json.loads(project.parameters_path.read_text())["parameters"]
        assert params["acaAppName"] == {"value": "aiapp-flow"}

        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")  # the what-if summary's dialog: provision
        await settle(pilot)
        assert app.main.activity.title_text.startswith("✓ Provision"), app.main.activity.last_error
        rows = [app.main.activity.table.get_row_at(i) for i in range(app.main.activity.table.row_count)]
        assert any("aiapp-flow" in str(r[2]) for r in rows)
        assert all("Succeeded" in str(r[0]) for r in rows)
        config = json.loads(project.config_path.read_text())
        assert config["ACA_APP_NAME"] == "aiapp-flow" and config["ACA_APP_ENDPOINT"]

        await pilot.press("f6")
        await settle(pilot)
        assert app.main.activity.title_text.startswith("✓ Deploy"), app.main.activity.last_error
        assert app.state.health == "healthy" and "healthy" in header()

        await pilot.press("f9")
        await settle(pilot)
        assert app.main.chat.query_one("#chat-key", Input).value  # the app's secret, read via listSecrets
        # Greedy and short: the demo model's weights are random, sampling could end at once.
        app.main.chat.query_one("#chat-temp", Input).value = "0"
        app.main.chat.query_one("#chat-max", Input).value = "24"
        app.query_one(PromptArea).text = "Hello"
        await pilot.press("enter")
        await settle(pilot)
        assert not app.main.chat.query(".chat-error"), [str(w.render()) for w in app.main.chat.query(".chat-error")]
        assert app.main.chat.query_one(".answer", Markdown).source
        assert "tok/s" in str(app.main.chat.query(".answer-stats").last().render())
