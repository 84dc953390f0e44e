"""Revert puts the file's values back exactly as the form first showed them, and quitting
with unsaved parameter changes asks first (F10 and ctrl+q alike)."""

from __future__ import annotations

import json

from textual.widgets import Select

from aitk_tui.ui.screens.confirm_quit import ConfirmQuitScreen

from .conftest import settle
from .test_parameters import remember_group


def set_param(project, name: str, value) -> None:
    raw = json.loads(project.parameters_path.read_text())
    raw["parameters"][name] = {"value": value}
    project.parameters_path.write_text(json.dumps(raw, indent=2) + "\n")


async def test_revert_shows_a_bool_as_the_file_says_and_leaves_nothing_unsaved(make_app, ui_project):
    remember_group(ui_project)
    set_param(ui_project, "serveBase", True)
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        assert form.editor("serveBase").value == "true"
        form.editor("maximumInstanceCount").value = "3"
        await settle(pilot)
        assert app.state.params_dirty
        form.editor("maximumInstanceCount").focus()
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert form.editor("serveBase").value == "true"
        assert not app.state.params_dirty and app.state.why_not("provision") is None
        assert form.save()
    assert json.loads(ui_project.parameters_path.read_text())["parameters"]["serveBase"]["value"] is True


async def test_revert_keeps_a_value_outside_the_choices_visible(make_app, ui_project):
    set_param(ui_project, "location", "mars-north")
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        form.revert()
        await settle(pilot)
        editor = form.editor("location")
        assert isinstance(editor, Select) and editor.value == "mars-north"
        assert not app.state.params_dirty


async def test_quitting_with_unsaved_parameters_asks_and_esc_stays(make_app, ui_project):
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        form.editor("maximumInstanceCount").value = "3"
        await settle(pilot)
        for key in ("f10", "ctrl+q"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, ConfirmQuitScreen) and app.is_running
            await pilot.press("escape")
            await settle(pilot)
            assert not isinstance(app.screen, ConfirmQuitScreen) and app.is_running
        await pilot.press("f10")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
    assert app.return_code == 0
    saved = json.loads(ui_project.parameters_path.read_text())["parameters"]["maximumInstanceCount"]["value"]
    assert saved == 3


async def test_quit_without_saving_leaves_the_file_as_it_was(make_app, ui_project):
    before = ui_project.parameters_path.read_bytes()
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        form.editor("maximumInstanceCount").value = "3"
        await settle(pilot)
        await pilot.press("f10")
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
    assert app.return_code == 0
    assert ui_project.parameters_path.read_bytes() == before
