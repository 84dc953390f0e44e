"""The chat prompt: Enter sends, ctrl+j / alt+enter / shift+enter insert a new line.

shift+enter alone is not reliable in terminals (most send the same byte as Enter), so
ctrl+j (a plain line feed) always works. Both keys are remappable bindings.
"""

from __future__ import annotations

import time

from textual.message import Message

from ..commands import bindings_for
from .inputs import TextArea


class PromptArea(TextArea):
    BINDINGS = bindings_for("prompt")
    DEFAULT_CSS = """
    PromptArea { height: auto; min-height: 3; max-height: 8; }
    """
    HELD_NOTICE = ("An answer is still streaming: your text stays here, and Enter sends it once the answer "
                   "ends (Esc stops it).")
    busy = False  # an answer is streaming: typing goes on (the next message), sending waits
    _held_at = -1e9  # when Enter last waited (one notice per burst of Enters)

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

    def set_busy(self, busy: bool) -> None:
        """While an answer streams the prompt stays editable, so the next message can be typed
        ahead; only Enter waits (it says so) until the answer ends."""
        self.busy = busy
        self.set_class(busy, "-busy")

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
        if self.busy:
            now = time.monotonic()
            if now - self._held_at > 4:  # one notice per burst of Enters, not a stack of toasts
                self.notify(self.HELD_NOTICE, timeout=4)
            self._held_at = now
            return
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.call_later(self._newline_now)

    def _newline_now(self) -> None:
        if not self.read_only:
            self.insert("\n")
