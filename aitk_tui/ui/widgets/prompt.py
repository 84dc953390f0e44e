"""The chat prompt: Enter sends, ctrl+j / alt+enter / shift+enter insert a new line.

shift+enter alone is not reliable in terminals (most send the same byte as Enter), so
ctrl+j (a plain line feed) always works. Both keys are remappable bindings.
"""

from __future__ import annotations

from textual.message import Message
from textual.widgets import TextArea

from ..commands import bindings_for


class PromptArea(TextArea):
    BINDINGS = bindings_for("prompt")
    DEFAULT_CSS = """
    PromptArea { height: auto; min-height: 3; max-height: 8; }
    PromptArea.-locked { opacity: 60%; }
    """

    class Submitted(Message):
        def __init__(self, prompt: "PromptArea", text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("placeholder", "Ask something — Enter sends, ctrl+j new line")
        super().__init__("", **kwargs)

    def set_locked(self, locked: bool) -> None:
        self.read_only = locked
        self.set_class(locked, "-locked")

    # Enter and ctrl+j are priority bindings (TextArea would take them for itself otherwise), so
    # the app runs them the moment the key is read, while the characters read just before them
    # (one burst: typing over ssh, a paste without bracketed paste, tmux send-keys) still wait
    # in this widget's queue. Acting at once sent an empty or cut-off prompt and lost the Enter;
    # call_later queues the action behind those characters, so it sees the text as typed.
    def action_submit(self) -> None:
        self.call_later(self._submit_now)

    def _submit_now(self) -> None:
        if self.read_only:
            return
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.call_later(self._newline_now)

    def _newline_now(self) -> None:
        if not self.read_only:
            self.insert("\n")
