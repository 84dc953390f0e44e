"""The one-line header: who is signed in, subscription, resource group, endpoint health."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..state import UIState

_HEALTH = {
    "healthy": ("● healthy", "green"),
    "asleep": ("○ asleep", "yellow"),
    "waking": ("◐ waking", "yellow"),
    "unhealthy": ("○ not serving", "yellow"),
    "unreachable": ("✕ unreachable", "red"),
    "checking": ("… checking", "dim"),
}


def health_label(state: UIState) -> tuple[str, str]:
    if state.config is None or not state.config.ACA_APP_ENDPOINT:
        return ("– no endpoint", "dim")
    return _HEALTH.get(state.health or "", ("? unknown", "dim"))


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader { dock: top; width: 100%; height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def show(self, state: UIState) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("aitk", style="bold")
        if state.local:
            text.append(" ")
            text.append(" LOCAL CLOUD ", style="bold black on yellow")
        sep = Text(" │ ", style="dim")
        text.append(sep)
        text.append(state.who, style="bold" if state.signed_in else "italic")
        text.append(sep)
        text.append("sub: ", style="dim")
        text.append(state.subscription_name or state.subscription_id or "—")
        text.append(sep)
        text.append("rg: ", style="dim")
        text.append(state.resource_group or "—")
        text.append(sep)
        label, style = health_label(state)
        text.append(label, style=style)
        if state.running:
            text.append(sep)
            text.append(f"{state.running}…", style="italic")
        self.update(text)
