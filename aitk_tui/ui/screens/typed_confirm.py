"""The question before a tear-down: what will be deleted, then Enter (the app alone) or the
resource group's name typed out (everything provisioning created), as ``aitk down [--all]`` asks.

Typing the name is the guard against a reflex Enter deleting the storage account with the
fine-tuned model in it: Enter with anything else typed deletes nothing and says what to type.
``delete`` is accepted too (a long generated group name is tedious to type over ssh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ..widgets.inputs import Input

if TYPE_CHECKING:
    from ...cloud.teardown import TeardownPlan

CONFIRM_WORD = "delete"


def plan_lines(plan: "TeardownPlan") -> list[str]:
    """One line per resource to delete, in the order they go."""
    lines = [f"- {t.type.split('/')[-1]}  {t.name}" for t in plan.delete]
    lines += [f"- {t.type.split('/')[-1]}  {t.name} (with its parent)" for t in plan.with_parent]
    return lines


class ConfirmTeardownScreen(ModalScreen[bool]):
    """Dismissed with True to delete what ``plan`` lists, False (Esc) to delete nothing.

    ``typed``: the text that confirms (the resource group's name; ``delete`` works too);
    None asks for a plain Enter."""

    BINDINGS = [
        # Not a priority binding: typed text reaches the Input through its own queue, and an
        # Enter handled ahead of it would check a name half typed (a paste, a fast typist).
        Binding("enter", "confirm", "Delete", id="teardown.yes"),
        Binding("escape", "cancel", "Cancel", id="teardown.no", priority=True),
    ]
    DEFAULT_CSS = """
    ConfirmTeardownScreen { align: center middle; }
    ConfirmTeardownScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $error; background: $surface; padding: 0 1;
    }
    ConfirmTeardownScreen #teardown-title { text-style: bold; color: $error; }
    ConfirmTeardownScreen VerticalScroll { height: auto; max-height: 8; margin-top: 1; }
    ConfirmTeardownScreen #teardown-keep { color: $text-muted; margin-top: 1; }
    ConfirmTeardownScreen #teardown-ask { margin-top: 1; }
    ConfirmTeardownScreen #teardown-hint { color: $warning; height: auto; }
    ConfirmTeardownScreen #teardown-keys { margin-top: 1; text-style: bold; }
    """

    def __init__(self, plan: "TeardownPlan", *, typed: str | None = None) -> None:
        super().__init__(id="confirm-teardown")
        self.plan = plan
        self.typed = typed

    def compose(self) -> ComposeResult:
        n = len(self.plan.delete)
        title = (f"Tear down everything: delete {n} resource{'s' if n != 1 else ''} in {self.plan.resource_group}"
                 if self.typed is not None else f"Tear down: delete the container app in {self.plan.resource_group}")
        with Vertical():
            yield Label(title, id="teardown-title", markup=False)
            with VerticalScroll():
                yield Static("\n".join(plan_lines(self.plan)), id="teardown-list", markup=False)
            yield Static(self.plan.keep_note[:1].upper() + self.plan.keep_note[1:] + ".", id="teardown-keep",
                         markup=False)
            if self.typed is None:
                yield Static("Enter delete · Esc cancel (nothing is deleted)", id="teardown-keys", markup=False)
            else:
                yield Static(f"The data on the share goes too. Type {self.typed} (or {CONFIRM_WORD}) and press "
                             "Enter to delete; Esc cancels.", id="teardown-ask", markup=False)
                yield Input(placeholder=self.typed, id="teardown-input")
                yield Static("", id="teardown-hint", markup=False)

    def on_mount(self) -> None:
        if self.typed is not None:
            self.query_one("#teardown-input", Input).focus()

    def action_confirm(self) -> None:
        if self.typed is None:
            self.dismiss(True)
        else:
            self._check(self.query_one("#teardown-input", Input).value)

    @on(Input.Submitted, "#teardown-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._check(event.value)

    def _check(self, value: str) -> None:
        if value.strip() in (self.typed, CONFIRM_WORD):
            self.dismiss(True)
        else:
            self.query_one("#teardown-hint", Static).update(
                f"Nothing deleted: type {self.typed} or {CONFIRM_WORD} exactly, or press Esc.")

    def action_cancel(self) -> None:
        self.dismiss(False)
