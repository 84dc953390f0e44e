"""The one-line header: who is signed in, subscription, resource group, endpoint health.

Health is drawn at the right edge and never cut: at 80 columns the left part (a long
subscription id, the group) is shortened with an ellipsis instead. The app refreshes it
in a worker every ``AitkApp.HEALTH_REFRESH_S`` seconds (and after a deploy).
"""

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
    "failed": ("✕ revision failed", "red"),
    "checking": ("… checking", "dim"),
}


def health_label(state: UIState) -> tuple[str, str]:
    if state.config is None or not state.config.ACA_APP_ENDPOINT:
        return ("– no endpoint", "dim")
    if state.config_is_local_cloud:
        return ("– local cloud", "dim")
    return _HEALTH.get(state.health or "", ("? unknown", "dim"))


def short_subscription(state: UIState) -> str:
    """The subscription's name, or the first block of its id (36 characters do not fit)."""
    if state.subscription_name:
        return state.subscription_name
    sid = state.subscription_id or ""
    return f"{sid[:8]}…" if len(sid) > 12 else (sid or "—")


class StatusHeader(Static):
    DEFAULT_CSS = """
    StatusHeader { dock: top; width: 100%; height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """
    _state: UIState | None = None

    def show(self, state: UIState) -> None:
        left = Text(no_wrap=True, overflow="ellipsis")
        left.append("aitk", style="bold")
        if state.local:
            left.append(" ")
            left.append(" LOCAL CLOUD ", style="bold black on yellow")
        sep = Text(" │ ", style="dim")
        left.append(sep)
        left.append(state.who, style="bold" if state.signed_in else "italic")
        left.append(sep)
        left.append("sub: ", style="dim")
        left.append(short_subscription(state))
        left.append(sep)
        left.append("rg: ", style="dim")
        left.append(state.resource_group or "—")
        if state.running:
            left.append(sep)
            left.append(f"{state.running}…", style="italic")
        label, style = health_label(state)
        right = Text(no_wrap=True)
        if state.gpu_billing:  # kept warm: the user should not forget it is paying
            right.append(" │ ", style="dim")
            right.append(" GPU billing ", style="bold white on red")
        right.append(" │ ", style="dim")
        right.append(label, style=style)
        self._state = state
        width = self.content_size.width or 78
        # Left part shortened with an ellipsis so the health always fits at the right edge.
        left.truncate(max(1, width - right.cell_len), overflow="ellipsis", pad=True)
        self.update(left + right)

    def on_resize(self) -> None:
        if self._state is not None:
            self.show(self._state)
