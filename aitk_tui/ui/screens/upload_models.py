"""The palette's "Upload model/adapter…": the folders of ``aitk models upload``, checked before
the dialog closes (a folder without adapter_config.json or config.json, a name the share or
the server refuses), each problem shown in one sentence under the fields."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ...cloud.models_upload import UploadRequest
from ...errors import AitkError
from ..widgets.inputs import Input


class UploadModelsScreen(ModalScreen["UploadRequest | None"]):
    """Dismissed with the checked :class:`UploadRequest`, or None (Esc)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="upload.cancel", priority=True)]
    DEFAULT_CSS = """
    UploadModelsScreen { align: center middle; }
    UploadModelsScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    UploadModelsScreen #upload-title { text-style: bold; margin-bottom: 1; }
    UploadModelsScreen #upload-error { color: $error; height: auto; }
    UploadModelsScreen #upload-keys { margin-top: 1; text-style: bold; }
    """

    def __init__(self, share: str) -> None:
        super().__init__(id="upload-models")
        self.share = share

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Upload to file share {self.share}", id="upload-title", markup=False)
            yield Label("Adapter folder (holds adapter_config.json)", markup=False)
            yield Input(placeholder="~/finetune/models/qlora/adapter", id="upload-adapter", compact=True)
            yield Label("Name (optional: served as this model beside other adapters)", markup=False)
            yield Input(placeholder="empty: the endpoint's single adapter", id="upload-name", compact=True)
            yield Label("Base model folder (optional, holds config.json)", markup=False)
            yield Input(placeholder="empty: keep modelPath as it is", id="upload-model", compact=True)
            yield Static("", id="upload-error", markup=False)
            yield Static("Enter upload · Tab next field · Esc cancel", id="upload-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one("#upload-adapter", Input).focus()

    def _value(self, field: str) -> str:
        return self.query_one(f"#upload-{field}", Input).value.strip()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        adapter, name, model = self._value("adapter"), self._value("name"), self._value("model")
        if not adapter:
            self.query_one("#upload-error", Static).update("✕ The adapter folder is required.")
            self.query_one("#upload-adapter", Input).focus()
            return
        try:
            request = UploadRequest.checked(Path(adapter), name or None, Path(model) if model else None)
        except AitkError as e:
            self.query_one("#upload-error", Static).update(f"✕ {e.message}")
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
