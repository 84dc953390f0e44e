"""F10 with unsaved parameter changes: save and quit, quit without saving, or stay."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ConfirmQuitScreen(ModalScreen[str | None]):
    """Dismisses with "save", "discard", or None (stay)."""

    BINDINGS = [
        Binding("s,ctrl+s", "choose('save')", "Save and quit", id="quit.save"),
        Binding("d", "choose('discard')", "Quit without saving", id="quit.discard"),
        Binding("escape", "choose(None)", "Stay", id="quit.stay"),
    ]
    DEFAULT_CSS = """
    ConfirmQuitScreen { align: center middle; }
    ConfirmQuitScreen > Vertical {
        width: 64; max-width: 95%; height: auto; border: round $warning; background: $surface; padding: 0 1;
    }
    ConfirmQuitScreen #quit-title { text-style: bold; }
    ConfirmQuitScreen #quit-keys { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("The parameters form has unsaved changes.", id="quit-title", markup=False)
            yield Static("s saves them and quits · d quits without saving · Esc stays", id="quit-keys",
                         markup=False)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
