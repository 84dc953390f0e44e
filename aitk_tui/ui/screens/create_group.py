"""Create a resource group: name and location checked as you type, created in a worker."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, LoadingIndicator, Select, Static

from ...config.naming import (
    GPU_LOCATIONS,
    LOCATIONS,
    NameError_,
    location,
    resource_group_name,
)
from ...errors import AitkError
from ..widgets.inputs import Input


def check_name(name: str) -> str | None:
    try:
        resource_group_name(name)
    except NameError_ as e:
        return str(e)
    return None


class CreateGroupScreen(ModalScreen[Any]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]
    DEFAULT_CSS = """
    CreateGroupScreen { align: center middle; }
    CreateGroupScreen > Vertical {
        width: 68; max-width: 95%; height: auto; border: round $accent; background: $surface; padding: 0 1;
    }
    CreateGroupScreen #cg-title { text-style: bold; margin-bottom: 1; }
    CreateGroupScreen .cg-error { color: $error; height: auto; }
    CreateGroupScreen #cg-hint { color: $text-muted; }
    CreateGroupScreen #cg-buttons { height: auto; margin-top: 1; }
    CreateGroupScreen #cg-buttons Button { margin-right: 2; }
    CreateGroupScreen LoadingIndicator { display: none; height: 1; }
    CreateGroupScreen.-busy LoadingIndicator { display: block; }
    """

    class Created(Message):
        def __init__(self, group: Any, error: str | None = None) -> None:
            super().__init__()
            self.group = group
            self.error = error

    def __init__(self, subscription: str, create: Callable[[str, str], Awaitable[Any]], *,
                 default_location: str | None = None) -> None:
        super().__init__()
        self.subscription = subscription
        self.create = create
        self.default_location = default_location if default_location in LOCATIONS else "westus3"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Create resource group in {self.subscription}", id="cg-title", markup=False)
            yield Label("Name", markup=False)
            yield Input(placeholder="e.g. rg-inference", id="cg-name", compact=True)
            yield Static("", id="cg-name-error", classes="cg-error", markup=False)
            yield Label("Location", markup=False)
            yield Select([(f"{loc}{'  (GPU)' if loc in GPU_LOCATIONS else ''}", loc) for loc in LOCATIONS],
                         value=self.default_location, allow_blank=False, id="cg-location", compact=True)
            yield Static("Serverless GPUs are offered in westus3, australiaeast and swedencentral.", id="cg-hint",
                         markup=False)
            yield Static("", id="cg-error", classes="cg-error", markup=False)
            yield LoadingIndicator()
            with Horizontal(id="cg-buttons"):
                yield Button("Create", id="cg-create", variant="primary", compact=True)
                yield Button("Cancel", id="cg-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cg-name", Input).focus()

    @on(Input.Changed, "#cg-name")
    def _name_changed(self, event: Input.Changed) -> None:
        error = check_name(event.value) if event.value else None
        self.query_one("#cg-name-error", Static).update(f"✕ {error}" if error else "")

    @on(Input.Submitted, "#cg-name")
    @on(Button.Pressed, "#cg-create")
    def _create(self, event: Message) -> None:
        event.stop()
        name = self.query_one("#cg-name", Input).value.strip()
        loc = self.query_one("#cg-location", Select).value
        error = check_name(name) if name else "Resource group name is required"
        if error:
            self.query_one("#cg-name-error", Static).update(f"✕ {error}")
            self.query_one("#cg-name", Input).focus()
            return
        try:
            location(str(loc))
        except NameError_ as e:
            self.query_one("#cg-error", Static).update(f"✕ {e}")
            return
        self.add_class("-busy")
        self.query_one("#cg-create", Button).disabled = True
        self.query_one("#cg-error", Static).update("")
        self._run_create(name, str(loc))

    @work(exclusive=True, group="create-group", exit_on_error=False)
    async def _run_create(self, name: str, loc: str) -> None:
        try:
            group = await self.create(name, loc)
        except AitkError as e:
            self.post_message(self.Created(None, e.message))
            return
        self.post_message(self.Created(group))

    @on(Created)
    def _created(self, event: Created) -> None:
        self.remove_class("-busy")
        self.query_one("#cg-create", Button).disabled = False
        if event.error:
            self.query_one("#cg-error", Static).update(f"✕ {event.error}")
            return
        self.dismiss(event.group)

    @on(Button.Pressed, "#cg-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
