"""The tear-down question on its own (Pilot, no cloud): Enter deletes only after the group's
name (or ``delete``) is typed; anything else deletes nothing; Esc cancels."""

from __future__ import annotations

import pytest
from textual.app import App

from aitk_tui.cloud.teardown import Target, TeardownPlan
from aitk_tui.ui.screens.typed_confirm import ConfirmTeardownScreen

BASE = "/subscriptions/s/resourceGroups/rg-x/providers/"
PLAN = TeardownPlan("rg-x", (Target.from_id(BASE + "Microsoft.App/containerApps/app1"),
                             Target.from_id(BASE + "Microsoft.Storage/storageAccounts/acct1")),
                    (Target.from_id(BASE + "Microsoft.Storage/storageAccounts/acct1/fileServices/default"),),
                    "kept: the resource group rg-x")


class _Host(App):
    def __init__(self, typed):
        super().__init__()
        self.typed, self.answers = typed, []

    def on_mount(self) -> None:
        self.push_screen(ConfirmTeardownScreen(PLAN, typed=self.typed), self.answers.append)


@pytest.mark.parametrize("text, deleted", [("rg-x", True), ("delete", True), ("  rg-x ", True), ("rg-X", False),
                                           ("", False), ("rg-xx", False), ("DELETE", False)])
async def test_typed_confirmation(text, deleted):
    app = _Host("rg-x")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for ch in text:
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        await pilot.pause()
        assert app.answers == ([True] if deleted else [])
        if not deleted:
            assert "Nothing deleted" in str(app.screen.query_one("#teardown-hint").render())
            await pilot.press("escape")
            await pilot.pause()
            assert app.answers == [False]


async def test_plain_question_enter_and_escape():
    app = _Host(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one("#teardown-list").render())
        assert "containerApps  app1" in text and "fileServices  acct1/default (with its parent)" in text
        await pilot.press("enter")
        await pilot.pause()
        assert app.answers == [True]
