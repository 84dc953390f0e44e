"""The parameters form: rules checked as you type, round-trip save, a corrupt file left alone."""

from __future__ import annotations

import json

from textual.widgets import Static

from aitk_tui.config.state import ProjectState
from aitk_tui.ui.widgets.parameters_form import ParametersForm

from .conftest import settle


def field_error(form: ParametersForm, name: str) -> str:
    row = form.query_one(f"#row-{name}")
    return str(row.query_one(".field-error", Static).render()) if row.has_class("-invalid") else ""


def remember_group(project) -> None:
    ProjectState(subscription_id="s1", subscription_name="Dev", resource_group="rg").save(project.state_path)


async def test_naming_rules_are_checked_as_you_type(make_app, ui_project):
    remember_group(ui_project)
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        form.editor("storageAccountName").focus()
        await pilot.press("A", "_")  # typed: checked keystroke by keystroke
        await settle(pilot)
        assert "lowercase letters and digits" in field_error(form, "storageAccountName")
        assert app.state.params_dirty and app.state.params_invalid
        assert "save (ctrl+s) or revert" in app.state.why_not("provision")
        form.editor("storageAccountName").value = "goodname42"
        await settle(pilot)
        assert field_error(form, "storageAccountName") == ""
        form.editor("maximumInstanceCount").value = ""
        await settle(pilot)
        assert "required" in field_error(form, "maximumInstanceCount")


async def test_save_keeps_unknown_keys_and_order(make_app, ui_project):
    path = ui_project.parameters_path
    raw = json.loads(path.read_text())
    raw["parameters"]["customFlag"] = {"value": True, "metadata": {"note": "mine"}}
    raw["x-team"] = "inference"
    path.write_text(json.dumps(raw, indent=4) + "\n")
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        assert "customFlag" in str(form.query_one("#params-extra", Static).render())
        form.editor("acaAppName").value = "my-inference-app"
        form.editor("maximumInstanceCount").value = "3"
        form.editor("location").value = "swedencentral"  # a Select
        form.editor("defaultCommands").text = "cd /mount\n\npython3 -m inference_server\n"  # one per line
        await settle(pilot)
        await pilot.press("f7", "ctrl+s")
        await settle(pilot)
        assert not app.state.params_dirty
    saved = json.loads(path.read_text())
    assert saved["x-team"] == "inference"
    assert saved["parameters"]["customFlag"] == {"value": True, "metadata": {"note": "mine"}}
    assert saved["parameters"]["acaAppName"] == {"value": "my-inference-app"}
    assert saved["parameters"]["maximumInstanceCount"] == {"value": 3}
    assert saved["parameters"]["location"] == {"value": "swedencentral"}
    assert saved["parameters"]["defaultCommands"] == {"value": ["cd /mount", "python3 -m inference_server"]}
    assert list(saved["parameters"]) == list(raw["parameters"])  # order kept, nothing added for empty fields
    assert path.read_text().startswith('{\n    "$schema"')  # the file's own indentation kept


async def test_save_with_an_error_writes_nothing_and_focuses_the_first_failure(make_app, ui_project):
    before = ui_project.parameters_path.read_bytes()
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        form.editor("fileShareName").value = "Bad--Share"
        form.editor("acaAppName").value = "-nope"
        await settle(pilot)
        await pilot.press("f7", "ctrl+s")
        await settle(pilot)
        assert app.focused is form.editor("fileShareName")
        assert "File share" in field_error(form, "fileShareName")
        assert any("Not saved" in n.message for n in app._notifications)
    assert ui_project.parameters_path.read_bytes() == before


async def test_revert_restores_the_file_values(make_app):
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        form.editor("acaAppName").value = "changed-app"
        await settle(pilot)
        assert app.state.params_dirty
        await pilot.press("f7", "ctrl+r")
        await settle(pilot)
        assert form.editor("acaAppName").value == ""
        assert not app.state.params_dirty


async def test_corrupt_file_is_shown_and_left_byte_for_byte_unchanged(make_app, ui_project):
    corrupt = b'{\n  "parameters": {\n    "acaAppName": {"value": "x"},,\n'
    ui_project.parameters_path.write_bytes(corrupt)
    remember_group(ui_project)
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        assert form.has_class("-broken")
        shown = str(form.query_one("#file-error", Static).render())
        assert "not valid JSON" in shown and "line 3" in shown
        await pilot.press("ctrl+s")
        await settle(pilot)
        await app.main.run_action("save_parameters")
        await settle(pilot)
        assert "fix the parameters file first" in app.state.why_not("provision")
    assert ui_project.parameters_path.read_bytes() == corrupt


async def test_choosing_the_t4_fits_the_container_to_it(make_app, ui_project):
    """The template's defaults are the A100's size (24 vCPU, 220Gi); Azure refuses them on the T4."""
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        assert form.editor("containerCpu").value == "" and form.editor("containerMemory").value == ""
        form.editor("gpuProfileType").value = "Consumption-GPU-NC8as-T4"
        await settle(pilot)
        assert (form.editor("containerCpu").value, form.editor("containerMemory").value) == ("8", "56Gi")
        assert field_error(form, "containerCpu") == "" and not app.state.params_invalid
        form.editor("containerCpu").value = "16"  # more than the T4 gives: shown beside the field
        await settle(pilot)
        assert "more than the Consumption-GPU-NC8as-T4 profile offers (8 vCPU, 56 GiB)" in field_error(form, "containerCpu")
        assert not form.save()
        form.editor("containerCpu").value = "8"
        await settle(pilot)
        assert form.save()
    saved = {k: v["value"] for k, v in json.loads(ui_project.parameters_path.read_text())["parameters"].items()}
    assert (saved["gpuProfileType"], saved["containerCpu"], saved["containerMemory"]) == (
        "Consumption-GPU-NC8as-T4", 8, "56Gi")
