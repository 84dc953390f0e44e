"""Strings from outside (Azure, an endpoint, a file) are shown as text, never as markup.

A model id ``[/]base`` from ``/v1/models`` crashed the TUI in the compare picker, and
``[@click=app.screenshot(...)]`` became an action the endpoint chose, run on a click. Each
surface that shows such strings gets them here: the pickers, the tables, the toasts, the
failure's title and the activity log. And a rule over the source keeps new widgets plain.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList

from aitk_tui.cloud.models import ResourceGroupInfo
from aitk_tui.events import Failed, ResourceProgress

from .conftest import settle
from .fakes import FakeChatClient, FakeSession, write_config

pytestmark = pytest.mark.timeout(60)

CLICK = "[@click=app.screenshot('pwned.svg','/tmp')]evil[/]"
HOSTILE = ["[/]base", CLICK, "[bold red]loud", "tail\\"]
UI = Path(__file__).resolve().parents[2] / "aitk_tui" / "ui"


def _option_texts(screen) -> list[str]:
    options = screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def _wait_loaded(pilot, screen_id: str):
    for _ in range(200):
        await pilot.pause(0.02)
        if pilot.app.screen.id == screen_id and pilot.app.screen.loaded:
            return pilot.app.screen
    raise AssertionError(f"{screen_id} never loaded")


class HostileModels(FakeChatClient):
    async def list_models(self) -> list[str]:
        return list(HOSTILE)


async def test_model_ids_from_the_endpoint_are_text_in_the_compare_pickers(make_app, ui_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a click on the markup would have saved a screenshot
    write_config(ui_project)
    app, _ = make_app(chat_client_factory=HostileModels)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        chat = await app.main.ensure_pane("chat")
        chat.set_endpoint("https://app.example.invalid", "test-key-123456")
        await settle(pilot)
        await app.main.run_action("compare_models")
        screen = await _wait_loaded(pilot, "compare-picker-a")
        await pilot.pause(0.1)  # drawn with every option on screen: the crash was here
        assert _option_texts(screen) == HOSTILE
        await pilot.click(OptionList, offset=(8, 1))  # on the click-markup option
        await pilot.pause(0.2)
        assert app.screen.id == "compare-picker-b"  # picking it moved on, nothing else ran
        picked = app.screen
        await _wait_loaded(pilot, "compare-picker-b")
        assert _option_texts(picked) == [m for m in HOSTILE if m != CLICK]
        assert CLICK in str(picked.query_one("#picker-title").render())
    assert not list(tmp_path.rglob("*.svg")) and not list(Path("/tmp").glob("pwned*.svg"))


async def test_resource_group_names_are_text_in_the_picker(make_app, ui_project):
    session = FakeSession(ui_project, groups=[ResourceGroupInfo(name, "westus3") for name in HOSTILE])
    app, _ = make_app(session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f3", "enter")
        await settle(pilot)
        await pilot.press("f4")
        await settle(pilot)
        assert app.screen.id == "group-picker"
        texts = _option_texts(app.screen)
        for name in HOSTILE:
            assert any(text.startswith(name) for text in texts), (name, texts)


async def test_toasts_the_failure_and_the_tables_show_names_as_typed(make_app, ui_project):
    write_config(ui_project)
    app, _ = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.notify(f"Deleted {HOSTILE[0]} and {CLICK}")
        activity = app.main.activity
        activity.begin("provision", "Provision")
        for name in HOSTILE:
            activity.feed(ResourceProgress("Microsoft.App/containerApps", name, "Failed", 1.0, f"{name} failed"))
        activity.end("Provision", "failed", Failed(f"The app {HOSTILE[0]} failed.", f"detail {CLICK}"))
        await settle(pilot)
        assert any(n.message == f"Deleted {HOSTILE[0]} and {CLICK}" for n in app._notifications)
        cells = [str(c) for key in activity.table.rows for c in activity.table.get_row(key)]
        for name in HOSTILE:
            assert name.rsplit("/", 1)[-1] in cells  # the table shows a name's last segment
        assert f"The app {HOSTILE[0]} failed." in str(activity.query_one("#error").title)
        assert CLICK in str(activity.query_one("#error-detail").render())


class HostileStatus(FakeSession):
    async def endpoint_status(self, config):
        status = await super().endpoint_status(config)
        rev = replace(status.revisions[0], name=HOSTILE[0])
        replica = replace(status.replicas[0], name=f"{HOSTILE[0]}-646779b4b6-[@click=app.bell]x", revision=HOSTILE[0])
        return replace(status, revisions=(rev,), replicas=(replica,))


async def test_revision_and_replica_names_are_text_in_the_endpoint_tables(make_app, ui_project):
    write_config(ui_project)
    app, _ = make_app(session=HostileStatus(ui_project))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f12")
        for _ in range(200):
            await pilot.pause(0.02)
            if app.query("#endpoint-view") and app.query_one("#endpoint-view").reads >= 1:
                break
        view = app.query_one("#endpoint-view")
        await pilot.pause(0.1)

        def cells(table_id: str) -> list[str]:
            table = view.query_one(table_id, DataTable)
            return [str(c) for key in table.rows for c in table.get_row(key)]

        assert HOSTILE[0] in cells("#ep-revisions")
        assert "[@click=app.bell]x" in cells("#ep-replicas")


def _static_calls_without_plain_text() -> list[str]:
    """Every Static/Label in ui/ says markup=False (its later ``update()`` follows it), and an
    Option never gets a plain string (OptionList reads it as markup)."""
    found = []
    for path in sorted(UI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            where = f"{path.relative_to(UI)}:{node.lineno}"
            if name in ("Static", "Label"):
                markup = {k.arg: k.value for k in node.keywords}.get("markup")
                if not (isinstance(markup, ast.Constant) and markup.value is False):
                    found.append(where)
            elif name == "Option" and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                found.append(where)
    return found


def test_every_static_and_label_in_the_ui_shows_plain_text():
    assert _static_calls_without_plain_text() == []
