"""F1: help for what has focus, then every key (after the user's keymap)."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown

from ..commands import COMMANDS, key_display
from ..settings import config_path

GENERAL = """
## aitk
Provision Azure Container Apps for inference, deploy the inference server and chat
with it. Everything is reachable from the **command palette** (F2 or ctrl+p): type
a few letters of what you want to do.
"""


_SCOPE_ORDER = ("app", "activity", "params", "chat", "prompt")
_WHERE = {"params": "Parameters tab", "activity": "Activity tab", "chat": "Chat tab", "prompt": "chat prompt"}


def _key_order(c, keys: str) -> tuple:
    """Global keys first, F1..F12 in number order, then each tab's own keys together."""
    scope = "activity" if c.tab_key and c.tabs == ("activity",) else "app" if c.scope == "screen" else c.scope
    fkey = re.fullmatch(r"F(\d{1,2})", keys.split(" / ")[0])
    return (_SCOPE_ORDER.index(scope) if scope in _SCOPE_ORDER else len(_SCOPE_ORDER),
            0 if fkey else 1, int(fkey.group(1)) if fkey else 0)


def keys_markdown(app) -> str:
    rows = ["| Key | Command | Where |", "| --- | --- | --- |"]
    entries = []
    for c in COMMANDS:
        keys = key_display(app, c.id)
        if not keys:
            continue
        if c.tab_key:
            where = " / ".join(_WHERE.get(t, f"{t.capitalize()} tab") for t in c.tabs)
        else:
            where = "everywhere" if c.scope in ("app", "screen") else _WHERE.get(c.scope, c.scope)
        entries.append((_key_order(c, keys), keys, c.title, where))
    for _, keys, title, where in sorted(entries, key=lambda e: e[0]):  # stable: ties keep COMMANDS' order
        rows.append(f"| {keys.replace('|', '/')} | {title} | {where} |")
    return "\n".join(rows)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "close", "Close", id="help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 90%; max-width: 100; height: 90%; border: round $accent; background: $surface;
    }
    HelpScreen #help-hint { dock: bottom; color: $text-muted; padding: 0 1; }
    HelpScreen VerticalScroll { padding: 0 1; }
    """

    def __init__(self, focused_help: str | None) -> None:
        super().__init__()
        self.focused_help = focused_help

    def compose(self) -> ComposeResult:
        text = (self.focused_help or GENERAL).strip()
        text += "\n\n## Keys\n" + keys_markdown(self.app)
        text += (f"\n\nRemap any key in `{config_path()}` under `[keymap]`, by binding id "
                 "(e.g. `provision = \"f5,ctrl+g\"`).\n")
        with Vertical():
            with VerticalScroll():
                yield Markdown(text, id="help-text")
            yield Label("Esc or F1 closes", id="help-hint", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)


def focused_help(app) -> str | None:
    """The HELP text of the focused widget or the nearest ancestor that has one."""
    node = app.focused
    while node is not None:
        text = getattr(type(node), "HELP", None)
        if isinstance(text, str) and text.strip():
            return text
        node = node.parent
    return None
