"""The shell: palette built from state, bindings from one definition, keymap, help, start-up."""

from __future__ import annotations

import json
import subprocess
import sys

from textual.command import CommandList, CommandPalette

from aitk_tui.ui.commands import COMMANDS
from aitk_tui.ui.screens.help import HelpScreen
from aitk_tui.ui.settings import UISettings

from .conftest import REPO, settle

REQUIRED_TITLES = [
    "Sign in", "Select subscription", "Select resource group", "Create resource group",
    "Edit inference parameters", "Preview provisioning (what-if)",
    "Provision Azure Container Apps for inference", "Deploy for inference", "Go to inference endpoint",
    "Show replica logs", "Open inference.config.json",
]


async def _palette_entries(pilot, query: str = "") -> dict[str, str]:
    await pilot.press("ctrl+p")
    await settle(pilot)
    if query:
        await pilot.press(*query)
        await settle(pilot, 0.1)
    palette = pilot.app.screen
    assert isinstance(palette, CommandPalette)
    options = palette.query_one(CommandList)
    return {str(o.hit.text): str(o.hit.help or "") for o in options._options if hasattr(o, "hit")}


async def test_palette_lists_every_command_and_says_why_one_cannot_run(make_app):
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        entries = await _palette_entries(pilot)
        for title in REQUIRED_TITLES:
            assert title in entries, title
        # Our actions lead the empty palette; Textual's own (Theme, Keys, Quit) follow them.
        titles = list(entries)
        assert "Theme" in titles
        assert max(titles.index(t) for t in REQUIRED_TITLES) < titles.index("Theme"), titles
        # Signed in, nothing selected yet: the next steps explain what is missing.
        assert "Not yet" not in entries["Select subscription"]
        assert "select a subscription first" in entries["Select resource group"]
        assert "select a subscription first" in entries["Provision Azure Container Apps for inference"]
        assert "provision first" in entries["Deploy for inference"]
        assert "ACA_APP_ENDPOINT" in entries["Go to inference endpoint"]
        # Choosing a command that cannot run says why in a notification instead of failing.
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("select a subscription first" in m for m in messages), messages
        assert app.state.running is None


async def test_palette_is_fuzzy_and_runs_the_chosen_command(make_app):
    app, session = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        entries = await _palette_entries(pilot, "subs")
        assert list(entries)[0] == "Select subscription"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.id == "subscription-picker"
        assert "list_subscriptions" in session.calls


async def test_palette_reflects_state_once_a_group_is_chosen(make_app, ui_project):
    ui_project.state_dir.mkdir(parents=True, exist_ok=True)
    ui_project.state_path.write_text(json.dumps({"subscription_id": "s1", "subscription_name": "Dev",
                                                 "resource_group": "rg-inference"}))
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        entries = await _palette_entries(pilot)
        assert not entries["Provision Azure Container Apps for inference"].startswith("Not yet")
        assert "F5" in entries["Provision Azure Container Apps for inference"]


def test_one_definition_drives_bindings_footer_and_palette():
    from aitk_tui.ui.app import AitkApp
    from aitk_tui.ui.screens.main import MainScreen
    from aitk_tui.ui.widgets.activity import ActivityPane
    from aitk_tui.ui.widgets.chat import ChatPane
    from aitk_tui.ui.widgets.parameters_form import ParametersForm
    from aitk_tui.ui.widgets.prompt import PromptArea

    ids = {b.id for cls in (AitkApp, MainScreen, ParametersForm, ChatPane, PromptArea, ActivityPane) for b in cls.BINDINGS}
    keyed = {c.id for c in COMMANDS if c.key}
    assert keyed <= ids
    for c in COMMANDS:
        assert c.key is None or "ctrl+q" != c.key, "never ctrl+q as the only way"
        assert c.key != "ctrl+enter"


async def test_keymap_from_xdg_config_remaps_a_binding(make_app, _isolated_config):
    (_isolated_config / "aitk").mkdir()
    (_isolated_config / "aitk" / "tui.toml").write_text('[keymap]\nselect_subscription = "ctrl+t"\n')
    app, _ = make_app(settings=UISettings.load())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f3")  # the old key does nothing now
        await settle(pilot)
        assert not app.screen.is_modal
        keys = {active.binding.id: key for key, active in app.screen.active_bindings.items()}
        assert keys.get("select_subscription") == "ctrl+t"  # what the footer shows
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert app.screen.id == "subscription-picker"


async def test_bad_settings_file_and_unknown_theme_fall_back_safely(make_app, _isolated_config):
    (_isolated_config / "aitk").mkdir()
    (_isolated_config / "aitk" / "tui.toml").write_text('theme = "no-such-theme"\n')
    app, _ = make_app(settings=UISettings.load())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.theme == "textual-dark"
        assert app.animation_level == "none"
    (_isolated_config / "aitk" / "tui.toml").write_text('theme = \n')
    settings = UISettings.load()
    assert settings.load_error and settings.theme == "textual-dark"


async def test_f1_explains_what_has_focus(make_app):
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)  # the Azure checklist has focus
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert "## Azure" in (app.screen.focused_help or "")
        assert "| F5 | Provision Azure Container Apps for inference |" in app.screen.query_one("#help-text").source
        await pilot.press("escape")
        await settle(pilot)
        assert not app.screen.is_modal


def test_ui_import_does_not_load_the_azure_sdk():
    code = ("import json, sys; import aitk_tui.ui.app; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    roots = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {"azure", "torch", "transformers", "httpx"} & roots, sorted(roots)


async def test_open_config_edits_the_six_keys_and_refuses_bad_json(make_app, ui_project):
    from textual.widgets import Static, TextArea

    before = ui_project.config_path.read_bytes()
    app, _ = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await app.main.run_action("open_config")
        await settle(pilot)
        editor = app.screen.query_one(TextArea)
        editor.text = '{"ACA_APP_ENDPOINT": "myapp.io",'
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Not saved" in str(app.screen.query_one("#cfg-error", Static).render())
        assert ui_project.config_path.read_bytes() == before
        editor.text = json.dumps({"ACA_APP_ENDPOINT": "myapp.io", "ACA_APP_NAME": "myapp"})
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not app.screen.is_modal
        assert app.state.config.endpoint_url == "https://myapp.io"
        assert app.state.why_not("go_to_endpoint") is None
    assert json.loads(ui_project.config_path.read_text())["ACA_APP_NAME"] == "myapp"
