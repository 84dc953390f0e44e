"""What a person meets at 80x24: one line per checklist step, the help's keys in order,
honest placeholders, short toasts that never sit on a dialog."""

from __future__ import annotations

import re

from textual.widgets import Input, OptionList, Static

from aitk_tui.config.naming import PARAMETER_SPECS
from aitk_tui.ui.screens.help import keys_markdown
from aitk_tui.ui.widgets.azure_pane import AzurePane
from aitk_tui.ui.widgets.parameters_form import make_editor

from .conftest import settle


def test_a_required_field_does_not_offer_the_template_default():
    for spec in PARAMETER_SPECS:
        editor = make_editor(spec, None)
        if isinstance(editor, Input):
            if spec.nullable:
                assert "default" in editor.placeholder, spec.name
            else:  # "Maximum instance count is required" beside a "template default" hint contradicted it
                assert "default" not in editor.placeholder and "required" in editor.placeholder, spec.name


async def test_the_help_lists_f_keys_in_order_then_each_tabs_keys(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        rows = keys_markdown(app).splitlines()[2:]
        fkeys = [int(m.group(1)) for row in rows if (m := re.match(r"\| F(\d+) \|", row))]
        assert fkeys == sorted(fkeys) and fkeys[:3] == [1, 2, 3], rows
        wheres = [row.rsplit("|", 2)[1].strip() for row in rows]
        # Each place's keys together: once a tab's keys start, "everywhere" never comes back.
        assert wheres.index("Activity tab") > max(i for i, w in enumerate(wheres) if w == "everywhere")
        assert "| end | Follow the activity log | Activity tab |" in rows


async def test_checklist_steps_stay_on_one_line_at_80_columns(make_app):
    app, _ = make_app(signed_in=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.state.signin_error = ("Not signed in to Azure: run `az login`, or use `--auth device-code` on a machine "
                                  "without a browser, or set AZURE_CLIENT_ID and friends.")
        app.refresh_state()
        await settle(pilot)
        steps = app.query_one(AzurePane).query_one(OptionList)
        for i in range(steps.option_count):
            prompt = steps.get_option_at_index(i).prompt
            assert "\n" not in str(prompt) and len(str(prompt)) <= steps.content_size.width, str(prompt)
        assert str(steps.get_option_at_index(0).prompt).endswith("…")  # the sign-in error was shortened


async def test_toasts_are_short_and_a_dialog_clears_them(make_app):
    from aitk_tui.ui.screens.help import HelpScreen

    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.notify("Saved something", timeout=10)
        app.notify("Could not read the API key", severity="warning", timeout=8)
        app.notify("To sign in, open … and enter ABCD-1234", timeout=30)  # must stay readable
        await pilot.pause()
        timeouts = [n.timeout for n in app._notifications]
        assert timeouts == [4.0, 6.0, 30.0]
        app.push_screen(HelpScreen(None))
        await settle(pilot)
        assert not list(app._notifications)


async def test_the_activity_title_wraps_instead_of_being_cut(make_app):
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        title = app.main.activity.query_one("#op-title", Static)
        assert len(app.main.activity.title_text) > 78
        assert title.size.height >= 2
