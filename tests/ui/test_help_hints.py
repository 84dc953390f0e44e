"""What the app suggests is right: the help's keymap example takes no key another command
has, and each list field's placeholder says what one of its lines holds."""

from __future__ import annotations

import re

from aitk_tui.ui.commands import COMMANDS
from aitk_tui.ui.screens.help import HelpScreen

from .conftest import settle


async def test_the_keymap_example_in_the_help_takes_no_key_another_command_uses(make_app):
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(m._markdown) for m in app.screen.query("Markdown"))
    command, keys = re.search(r'(\w+) = \\?"([^"\\]+)\\?"', text).groups()
    taken = {key.strip(): c.id for c in COMMANDS if c.key and c.id != command for key in c.key.split(",")}
    assert [k for k in keys.split(",") if k in taken] == [], {k: taken.get(k) for k in keys.split(",")}


async def test_the_adapters_field_asks_for_name_equals_path_lines(make_app):
    app, _ = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        form = await app.main.ensure_pane("parameters")
        assert "NAME=" in str(form.editor("adapters").placeholder)
        assert "command" in str(form.editor("defaultCommands").placeholder)
