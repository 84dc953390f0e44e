"""Subscriptions and resource groups: scoped pickers, remembered per project, create dialog."""

from __future__ import annotations

from textual.widgets import Input, OptionList, Static

from aitk_tui.config.state import ProjectState
from aitk_tui.ui.widgets.status_header import StatusHeader

from .conftest import settle
from .fakes import SUB_ID


def header_text(app) -> str:
    return str(app.query_one(StatusHeader).render())


async def test_select_subscription_then_group_is_remembered_for_the_project(make_app, ui_project):
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # the Azure checklist's cursor sits on the next step: Subscription
        await settle(pilot)
        picker = app.screen
        assert picker.id == "subscription-picker"
        await pilot.press(*"pr")  # search narrows the list
        await settle(pilot)
        options = picker.query_one(OptionList)
        assert options.option_count == 1 and "Contoso Prod" in str(options.get_option_at_index(0).prompt)
        picker.query_one(Input).value = ""
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.subscription_id == SUB_ID
        await pilot.press("f4")
        await settle(pilot)
        assert app.screen.id == "group-picker"
        assert f"list_resource_groups:{SUB_ID}" in session.calls
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.resource_group == "rg-inference"
        assert "Contoso Dev" in header_text(app) and "rg-inference" in header_text(app)

    saved = ProjectState.load(ui_project.state_path)
    assert (saved.subscription_id, saved.resource_group, saved.location) == (SUB_ID, "rg-inference", "westus3")

    # A new session of the app starts with the remembered choice.
    app2, _ = make_app()
    async with app2.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "rg-inference" in header_text(app2)
        assert app2.state.why_not("provision") is None


async def test_create_resource_group_validates_the_name_and_selects_the_new_group(make_app, ui_project):
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f3", "enter")
        await settle(pilot)
        await pilot.press("f4")
        await settle(pilot)
        app.screen.query_one(Input).value = "zzz"  # nothing matches: the create entry is still offered
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        dialog = app.screen
        assert type(dialog).__name__ == "CreateGroupScreen"
        await pilot.press(*"a.")  # checked as you type: may not end with '.'
        await settle(pilot)
        error = str(dialog.query_one("#cg-name-error", Static).render())
        assert "not valid" in error
        await pilot.press("enter")  # refused: still open, nothing created
        await settle(pilot)
        assert app.screen is dialog and not any(c.startswith("create_resource_group") for c in session.calls)
        dialog.query_one("#cg-name", Input).value = "rg-new-inference"
        await settle(pilot)
        assert str(dialog.query_one("#cg-name-error", Static).render()).strip() == ""
        await pilot.press("enter")
        await settle(pilot)
        assert not app.screen.is_modal
        assert "create_resource_group:rg-new-inference:westus3" in session.calls
        assert app.state.resource_group == "rg-new-inference"
    assert ProjectState.load(ui_project.state_path).resource_group == "rg-new-inference"


async def test_picker_load_failure_is_one_sentence_not_a_traceback(make_app):
    from aitk_tui.errors import AitkError

    app, session = make_app()

    async def broken():
        raise AitkError("Could not list subscriptions: the token has expired.", "AADSTS700082")

    session.list_subscriptions = broken
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        text = str(app.screen.query_one("#picker-error", Static).render())
        assert "token has expired" in text
        await pilot.press("escape")
        await settle(pilot)
        assert app.state.subscription_id is None


async def test_not_signed_in_offers_sign_in_and_device_code_is_shown(make_app):
    app, session = make_app(signed_in=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.state.why_not("select_subscription").startswith("sign in first")
        await app.main.run_action("sign_in")
        await settle(pilot)
        assert app.state.signed_in
        assert any("ABCD-1234" in n.message for n in app._notifications)


async def test_the_header_shows_health_in_words_at_80_columns_and_refreshes_it_by_itself(make_app, ui_project):
    from aitk_tui.cloud.models import AppStatus

    from .fakes import write_config

    write_config(ui_project)
    # The longest header there is: an id with no name, a long group, an operation running.
    ProjectState(subscription_id="00000000-aaaa-4aaa-8aaa-000000000001",
                 resource_group="rg-inference-with-a-rather-long-name").save(ui_project.state_path)
    app, session = make_app()
    answers = [AppStatus("app", "https://x", "Succeeded", "Running", "rev1", 0, None)]  # asleep first

    async def status(config):
        session.calls.append("status")
        return answers[0]

    session.status = status
    app.HEALTH_REFRESH_S = 0.2
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        header = header_text(app)
        assert header.rstrip().endswith("○ asleep"), header
        assert len(header) <= 78 and "…" in header  # the left part gave way, not the health
        # A replica started (a request woke it) but the platform has not judged it yet.
        answers[0] = AppStatus("app", "https://x", "Succeeded", "Running", "rev1", 1, None)
        for _ in range(40):
            await pilot.pause(0.1)
            if "waking" in header_text(app):
                break
        assert header_text(app).rstrip().endswith("◐ waking"), header_text(app)  # not "? unknown"
        answers[0] = AppStatus("app", "https://x", "Succeeded", "Running", "rev1", 1, True)
        before = session.calls.count("status")
        for _ in range(40):  # no key pressed: the app asks again on its own
            await pilot.pause(0.1)
            if "● healthy" in header_text(app):
                break
        assert header_text(app).rstrip().endswith("● healthy"), header_text(app)
        assert session.calls.count("status") > before
        assert "checking" not in header_text(app)  # the quiet refresh never blanks the answer
        # The revision could not activate (Azure's ActivationFailed, no replica): not "asleep".
        answers[0] = AppStatus("app", "https://x", "Succeeded", "Running", "rev1", 0, False,
                               revision_state="ActivationFailed", revision_failed=True,
                               revision_detail="Revision rev1 failed to activate (ActivationFailed): Deployment "
                                               "Progress Deadline Exceeded. 0/1 replicas ready.")
        for _ in range(40):
            await pilot.pause(0.1)
            if "revision failed" in header_text(app):
                break
        assert header_text(app).rstrip().endswith("✕ revision failed"), header_text(app)


async def test_a_config_the_local_cloud_wrote_is_shown_as_the_local_clouds_not_as_azure(make_app, ui_project):
    from aitk_tui.ui.app import create_app
    from aitk_tui.ui.widgets.azure_pane import AzurePane

    from .fakes import FakeSession, factory_for, write_config

    write_config(ui_project, endpoint="127.0.0.1:49321")  # what `aitk --local` provisioning writes
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        steps = {o.id: str(o.prompt) for o in app.query_one(AzurePane).query_one(OptionList)._options}
        assert not steps["provision"].startswith("✓") and "local cloud" in steps["provision"], steps
        assert "local cloud" in steps["deploy"]
        assert "local cloud" in str(app.query_one("#config-title", Static).render())
        assert header_text(app).rstrip().endswith("– local cloud")
        assert "local cloud" in app.state.why_not("deploy")
        assert "status" not in session.calls  # Azure is not asked about a loopback app
    # The same project with --local: that config is the journey's, provisioned.
    local_app = create_app(ui_project, local=True, session_factory=factory_for(FakeSession(ui_project)))
    async with local_app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        steps = {o.id: str(o.prompt) for o in local_app.query_one(AzurePane).query_one(OptionList)._options}
        assert steps["provision"].startswith("✓"), steps
        assert local_app.state.why_not("deploy") is None
