"""Snapshots of the main screens at 80x24 and 120x40 (deterministic by construction:
scripted session, fixed clock, workers awaited, no toasts, animations off)."""

from __future__ import annotations

import pytest

from aitk_tui.config.state import ProjectState
from aitk_tui.ui.app import create_app
from aitk_tui.ui.settings import UISettings
from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import FIXED_TIME, settle
from .fakes import SUB_ID, FakeChatClient, FakeSession, factory_for, write_config

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def _app(project, *, provisioned: bool = False):
    ProjectState(subscription_id=SUB_ID, subscription_name="Contoso Dev", resource_group="rg-inference",
                 location="westus3").save(project.state_path)
    if provisioned:
        write_config(project, endpoint="aiacaappdemo1.westus3.azurecontainerapps.io")
    session = FakeSession(project)
    return create_app(project, session_factory=factory_for(session), clock=lambda: FIXED_TIME,
                      settings=UISettings.load(), chat_client_factory=FakeChatClient)


async def _quiet(pilot) -> None:
    """Workers done, toasts gone, cursors steady (a blinking cursor is a coin toss)."""
    await settle(pilot)
    pilot.app.clear_notifications()
    for widget in pilot.app.query("Input, TextArea"):
        widget.cursor_blink = False
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_azure_tab(snap_compare, ui_project, size):
    assert snap_compare(_app(ui_project), terminal_size=size, run_before=_quiet)


@pytest.mark.parametrize("size", SIZES)
def test_parameters_tab_with_an_error_beside_its_field(snap_compare, ui_project, size):
    async def edit(pilot):
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        pilot.app.main.params_form.editor("storageAccountName").value = "Bad_Name"
        pilot.app.main.params_form.editor("maximumInstanceCount").value = "4"
        await settle(pilot)
        await pilot.press("ctrl+s")  # refused: the first failure is focused, its error beside it
        await _quiet(pilot)

    assert snap_compare(_app(ui_project), terminal_size=size, run_before=edit)


@pytest.mark.parametrize("size", SIZES)
def test_activity_after_a_provision(snap_compare, ui_project, size):
    async def provision(pilot):
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("enter")  # the what-if summary's dialog: provision
        await _quiet(pilot)

    assert snap_compare(_app(ui_project), terminal_size=size, run_before=provision)


@pytest.mark.parametrize("size", SIZES)
def test_chat_with_an_answer(snap_compare, ui_project, size):
    async def chat(pilot):
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        pilot.app.query_one(PromptArea).text = "What is a LoRA adapter?"
        await pilot.press("enter")
        await _quiet(pilot)
        pilot.app.query_one(PromptArea).blur()
        await settle(pilot)

    assert snap_compare(_app(ui_project, provisioned=True), terminal_size=size, run_before=chat)


@pytest.mark.parametrize("size", SIZES)
def test_provision_asks_with_the_what_if_summary(snap_compare, ui_project, size):
    async def preview(pilot):
        await settle(pilot)
        await pilot.press("f5")
        await _quiet(pilot)

    assert snap_compare(_app(ui_project), terminal_size=size, run_before=preview)
