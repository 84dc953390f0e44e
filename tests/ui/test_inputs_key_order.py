"""Bound keys (Backspace, arrows) typed in one burst apply in typing order.

The keys are posted to the app all at once, without waiting between them, as a terminal
burst reaches it (ssh, tmux send-keys, a loaded jump box). Textual's own widgets reorder
them (Textualize/textual#6605); ours must not.
"""

from __future__ import annotations

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input as TextualInput

from aitk_tui.ui.widgets.inputs import Input, TextArea
from aitk_tui.ui.widgets.prompt import PromptArea

BURST = ["0", "backspace", "1", "0", "0", "0"]  # the form's "0, then Backspace+1000"
EDIT = ["a", "b", "c", "backspace", "x", "y", "z", "left", "left", "backspace", "Q"]


class OneField(App):
    def __init__(self, field) -> None:
        super().__init__()
        self.field = field

    def compose(self) -> ComposeResult:
        yield self.field


def key_event(key: str) -> events.Key:
    return events.Key(key, key if len(key) == 1 else None)


async def type_burst(field, keys: list[str]) -> str:
    app = OneField(field)
    async with app.run_test() as pilot:
        field.focus()
        await pilot.pause()
        for key in keys:  # all queued before the first is handled
            app.post_message(key_event(key))
        await pilot.pause(0.2)
        await app.workers.wait_for_complete()
        await pilot.pause()
        return field.value if hasattr(field, "value") else field.text


@pytest.mark.parametrize("make", [lambda: Input(), lambda: TextArea(), lambda: PromptArea()],
                         ids=["Input", "TextArea", "PromptArea"])
async def test_a_burst_applies_in_typing_order(make):
    assert await type_burst(make(), BURST) == "1000"
    assert await type_burst(make(), EDIT) == "abQyz"


async def test_textuals_own_input_still_reorders_the_burst():
    """The reason for our classes: if this fails, upstream fixed #6605 (drop the workaround)."""
    assert await type_burst(TextualInput(), BURST) != "1000"


async def test_a_binding_the_widget_does_not_handle_still_reaches_the_app():
    """Keys the field has no binding for (F-keys, tab) still bubble to the app as before."""
    seen: list[str] = []

    class WithAppKey(OneField):
        BINDINGS = [("f5", "record", "record")]

        def action_record(self) -> None:
            seen.append(self.field.value)

    field = Input()
    app = WithAppKey(field)
    async with app.run_test() as pilot:
        field.focus()
        await pilot.pause()
        for key in ["a", "b", "backspace", "f5"]:
            app.post_message(key_event(key))
        await pilot.pause(0.2)
    assert seen == ["a"]
