"""Text fields whose bound keys apply in the order they were typed.

Textual handles a printable key inside the focused ``Input``/``TextArea`` but runs a bound
key (Backspace, Delete, arrows, Home/End, ctrl+k, ...) only after the key event has bubbled
through every ancestor's message queue up to the app. Keys that arrive in one burst, as
ssh, tmux and a loaded jump box deliver them, are all queued in the widget before the
first bound key reaches the app, so the letters typed after a Backspace were inserted
before it ran: ``abc<BS>xyz`` gave ``abcxy``, and ``0<BS>1000`` saved ``100``
(Textualize/textual#6605; the fix proposed upstream, PR #6631, is this one).

The widget's own bindings come first in the binding chain anyway (priority bindings were
already checked before the key reached it), so running them here, in the widget, changes
what runs in no case: only when it runs. Use these classes instead of Textual's.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input as _TextualInput
from textual.widgets import TextArea as _TextualTextArea


class OwnBindingsInOrder:
    """Mixin for a focusable text widget: its own non-priority bindings run inline."""

    async def _on_key(self, event: events.Key) -> None:
        chain = self.screen._binding_chain  # the keymap applied, as the app would see it
        if chain and chain[0][0] is self:
            for binding in chain[0][1].key_to_bindings.get(event.key, ()):
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()
                    return
        await super()._on_key(event)


class Input(OwnBindingsInOrder, _TextualInput):
    """Textual's ``Input``, with Backspace and friends kept in typing order."""


class TextArea(OwnBindingsInOrder, _TextualTextArea):
    """Textual's ``TextArea``, with Backspace and friends kept in typing order."""
