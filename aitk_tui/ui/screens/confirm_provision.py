"""F5's last step before anything is created: the what-if summary, Enter provisions, Esc cancels.

The CLI shows the same preview and asks (``aitk provision``); the TUI used to provision at
once. The summary groups the changes the back-end's what-if found (create, modify,
delete, unchanged), so the user sees what the deployment will do to the group first.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

# The order and wording of the groups (ARM's change types; unknown ones go last as they come).
_KINDS = (("create", "+", "create"), ("modify", "~", "modify"), ("delete", "-", "delete"),
          ("deploy", "+", "deploy"), ("nochange", "=", "unchanged"), ("ignore", "·", "ignored"))


def _short_type(resource_type: str) -> str:
    parts = resource_type.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else parts[-1]


def what_if_counts(changes: list[dict]) -> str:
    """``"6 to create, 1 unchanged"``: one phrase per kind, in the order above."""
    counts: dict[str, int] = {}
    for c in changes:
        kind = str(c.get("change_type", "?")).lower()
        counts[kind] = counts.get(kind, 0) + 1
    phrases = []
    for kind, _, word in _KINDS:
        n = counts.pop(kind, 0)
        if n:
            phrases.append(f"{n} unchanged" if kind == "nochange" else
                           f"{n} ignored" if kind == "ignore" else f"{n} to {word}")
    phrases += [f"{n} {kind}" for kind, n in counts.items()]
    return ", ".join(phrases) or "no changes"


def what_if_lines(changes: list[dict]) -> list[str]:
    """One line per resource, grouped by kind: ``+ create   containerApps  aiacaapp…``."""
    known = {kind for kind, _, _ in _KINDS}
    lines = []
    for kind, mark, word in _KINDS:
        for c in changes:
            if str(c.get("change_type", "")).lower() == kind:
                lines.append(f"{mark} {word:<9} {_short_type(str(c.get('resource_type', '')))}  {c.get('name', '')}")
    for c in changes:
        kind = str(c.get("change_type", "?"))
        if kind.lower() not in known:
            lines.append(f"? {kind.lower():<9} {_short_type(str(c.get('resource_type', '')))}  {c.get('name', '')}")
    return lines


class ConfirmProvisionScreen(ModalScreen[bool]):
    """Dismissed with True (Enter) to provision, False (Esc) to change nothing."""

    BINDINGS = [
        Binding("enter", "confirm", "Provision", id="confirm.yes", priority=True),
        Binding("escape", "cancel", "Cancel", id="confirm.no", priority=True),
    ]
    DEFAULT_CSS = """
    ConfirmProvisionScreen { align: center middle; }
    ConfirmProvisionScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $warning; background: $surface; padding: 0 1;
    }
    ConfirmProvisionScreen #confirm-title { text-style: bold; }
    ConfirmProvisionScreen #confirm-where { color: $text-muted; margin-bottom: 1; }
    ConfirmProvisionScreen VerticalScroll { height: auto; max-height: 12; }
    ConfirmProvisionScreen #confirm-note { color: $warning; margin-top: 1; }
    ConfirmProvisionScreen #confirm-keys { margin-top: 1; text-style: bold; }
    """

    def __init__(self, changes: list[dict], *, resource_group: str, subscription: str,
                 estimated: bool = False) -> None:
        super().__init__(id="confirm-provision")
        self.changes = changes
        self.resource_group = resource_group
        self.subscription = subscription
        self.estimated = estimated

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Provision: {what_if_counts(self.changes)}", id="confirm-title", markup=False)
            yield Label(f"in {self.resource_group} · {self.subscription}", id="confirm-where", markup=False)
            with VerticalScroll():
                yield Static("\n".join(what_if_lines(self.changes)) or "The deployment changes nothing.",
                             id="confirm-changes", markup=False)
            if self.estimated:
                yield Static("Estimated from the resources in the group (this cloud has no what-if API).",
                             id="confirm-note", markup=False)
            yield Static("Enter provision · Esc cancel (nothing is changed)", id="confirm-keys", markup=False)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
