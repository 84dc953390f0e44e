"""F5's last step before anything is created: the what-if summary, Enter provisions, Esc cancels.

The CLI shows the same preview and asks (``aitk provision``); the TUI used to provision at
once. The summary groups the changes the back-end's what-if found (create, modify,
delete, unchanged), so the user sees what the deployment will do to the group first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

if TYPE_CHECKING:
    from ...cloud.models import Change
    from ...cloud.prices import CostEstimate

# ARM's change types in the order shown, with a mark and the words used for them.
_KINDS = {"create": ("+", "to create"), "modify": ("~", "to modify"), "delete": ("-", "to delete"),
          "deploy": ("+", "to deploy"), "nochange": ("=", "unchanged"), "ignore": ("·", "ignored")}


def _short_type(resource_type: str) -> str:
    parts = resource_type.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else parts[-1]


def _kind(change: Change) -> str:
    return change.change_type.lower()


def _ordered(changes: Sequence[Change]) -> list[Change]:
    order = list(_KINDS)
    return sorted(changes, key=lambda c: order.index(_kind(c)) if _kind(c) in _KINDS else len(order))


def what_if_counts(changes: Sequence[Change]) -> str:
    """``"6 to create, 1 unchanged"``: one phrase per kind of change."""
    counts: dict[str, int] = {}
    for c in _ordered(changes):
        counts[_kind(c)] = counts.get(_kind(c), 0) + 1
    return ", ".join(f"{n} {_KINDS.get(kind, ('?', kind))[1]}" for kind, n in counts.items()) or "no changes"


def what_if_lines(changes: Sequence[Change]) -> list[str]:
    """One aligned line per resource, grouped by kind: ``+ create  containerApps  aiacaapp…``."""
    rows = [(_KINDS.get(_kind(c), ("?", ""))[0], _kind(c), _short_type(c.resource_type),
             c.name.rsplit("/", 1)[-1]) for c in _ordered(changes)]
    kind_w = max((len(r[1]) for r in rows), default=0)
    type_w = min(max((len(r[2]) for r in rows), default=0), 28)
    return [f"{mark} {kind:<{kind_w}}  {rtype:<{type_w}}  {name}" for mark, kind, rtype, name in rows]


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
    ConfirmProvisionScreen #confirm-cost { margin-top: 1; }
    ConfirmProvisionScreen #confirm-keys { margin-top: 1; text-style: bold; }
    """

    def __init__(self, changes: Sequence[Change], *, resource_group: str, subscription: str,
                 estimated: bool = False, cost: CostEstimate | None = None) -> None:
        super().__init__(id="confirm-provision")
        self.cost = cost  # what the app will cost, when the price table knows its GPU profile
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
            if self.cost is not None:
                yield Static("\n".join(self.cost.dialog_lines()), id="confirm-cost", markup=False)
            yield Static("Enter provision · Esc cancel (nothing is changed)", id="confirm-keys", markup=False)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
