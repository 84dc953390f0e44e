"""Open ``infra/inference.config.json``: view and edit the six keys (manual provisioning).

Saved only if the text is a JSON object of the AI Toolkit shape; a bad edit is
explained and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ...config.inference_config import KEYS, InferenceConfig
from ...errors import AitkError
from ..widgets.inputs import TextArea


def _template() -> str:
    return json.dumps({k: None for k in KEYS}, indent=2) + "\n"


class ConfigScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="config.close"),
        Binding("ctrl+s", "save", "Save", id="config.save"),
    ]
    DEFAULT_CSS = """
    ConfigScreen { align: center middle; }
    ConfigScreen > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 95%; border: round $accent;
        background: $surface; padding: 0 1;
    }
    ConfigScreen #cfg-title { text-style: bold; }
    ConfigScreen TextArea { height: 10; }
    ConfigScreen #cfg-error { color: $error; height: auto; }
    ConfigScreen #cfg-buttons { height: auto; }
    ConfigScreen #cfg-buttons Button { margin-right: 2; }
    """

    def __init__(self, path: Path, display_path: str = "infra/inference.config.json") -> None:
        super().__init__()
        self.path = Path(path)
        self.display_path = display_path

    def compose(self) -> ComposeResult:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = _template()
        except OSError as e:
            text = ""
            self.notify(f"Could not read {self.path}: {e}", severity="error")
        with Vertical():
            yield Label(f"{self.display_path}  ·  the six AI Toolkit keys (fill them by hand for manual provisioning)",
                        id="cfg-title", markup=False)
            yield TextArea(text, id="cfg-text", show_line_numbers=True, compact=True)
            yield Static("", id="cfg-error", markup=False)
            with Horizontal(id="cfg-buttons"):
                yield Button("Save  ctrl+s", id="cfg-save", variant="primary", compact=True)
                yield Button("Close  Esc", id="cfg-close", compact=True)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        text = self.query_one(TextArea).text
        error = self.query_one("#cfg-error", Static)
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("the file must be a JSON object")
            config = InferenceConfig.model_validate(raw)
            config.save(self.path)
        except (ValueError, ValidationError) as e:
            error.update(f"✕ Not saved: {str(e).splitlines()[0]}")
            return
        except AitkError as e:
            error.update(f"✕ Not saved: {e.message}")
            return
        self.notify("inference.config.json saved.", timeout=3)
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#cfg-save")
    def _save(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save()

    @on(Button.Pressed, "#cfg-close")
    def _close(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_close()
