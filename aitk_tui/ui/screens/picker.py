"""A scoped, searchable picker (subscriptions, resource groups) loaded in a worker.

The list loads in an async worker while a loading indicator shows; typing filters it
(fuzzy); Enter picks, Esc closes. A loading failure is shown in the dialog as one
sentence instead of a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.fuzzy import Matcher
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, LoadingIndicator, OptionList, Static
from textual.widgets.option_list import Option

from ...errors import AitkError
from ..widgets.inputs import Input


@dataclass(frozen=True)
class PickerItem:
    id: str
    title: str
    detail: str = ""
    value: Any = None


class PickerScreen(ModalScreen[PickerItem | None]):
    BINDINGS = [
        Binding("escape", "dismiss_none", "Close", id="picker.close"),
        Binding("down", "cursor_down", "Down", show=False, priority=True),
        Binding("up", "cursor_up", "Up", show=False, priority=True),
    ]
    DEFAULT_CSS = """
    PickerScreen { align: center middle; }
    PickerScreen > Vertical {
        width: 72; max-width: 95%; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    PickerScreen #picker-title { text-style: bold; width: 1fr; }
    PickerScreen #picker-filter { margin: 0; }
    PickerScreen OptionList { height: auto; max-height: 14; border: none; padding: 0; }
    PickerScreen LoadingIndicator { height: 3; }
    PickerScreen #picker-error { color: $error; height: auto; display: none; }
    PickerScreen.-failed #picker-error { display: block; }
    PickerScreen #picker-hint { color: $text-muted; }
    """

    class Loaded(Message):
        def __init__(self, items: list[PickerItem] | None, error: str | None = None) -> None:
            super().__init__()
            self.items = items
            self.error = error

    def __init__(self, title: str, loader: Callable[[], Awaitable[list[PickerItem]]], *,
                 current: str | None = None, extra: list[PickerItem] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.loader = loader
        self.current = current
        self.extra = extra or []
        self.items: list[PickerItem] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="picker-title", markup=False)
            yield Input(placeholder="type to search", id="picker-filter", compact=True)
            yield LoadingIndicator()
            yield Static("", id="picker-error", markup=False)
            yield OptionList(id="picker-list")
            yield Label("Enter picks · Esc closes", id="picker-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one(OptionList).display = False
        self.query_one(Input).focus()
        self._load()

    @work(exclusive=True, group="picker", exit_on_error=False)
    async def _load(self) -> None:
        try:
            items = await self.loader()
        except AitkError as e:
            self.post_message(self.Loaded(None, e.message + (f" ({e.detail})" if e.detail else "")))
            return
        self.post_message(self.Loaded(items))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        self.query_one(LoadingIndicator).display = False
        if event.items is None:
            self.add_class("-failed")
            self.query_one("#picker-error", Static).update(f"✕ {event.error}")
            self.query_one(OptionList).display = bool(self.extra)
            self.items = []
        else:
            self.items = event.items
            self.query_one(OptionList).display = True
        self.loaded = True
        self._fill(self.query_one(Input).value)

    def _fill(self, query: str) -> None:
        option_list = self.query_one(OptionList)
        option_list.clear_options()
        matcher = Matcher(query) if query else None
        scored = []
        for order, item in enumerate(self.items):
            score = matcher.match(f"{item.title} {item.detail}") if matcher else 1.0
            if score > 0:
                scored.append((-score, order, item))
        scored.sort(key=lambda t: (t[0], t[1]))
        # Titles and details come from Azure or an endpoint (a model id can be "[/]base"): plain
        # text, never markup.
        options = []
        for _s, _o, item in scored:
            mark = "● " if item.id == self.current else ""
            options.append(Option(_label(mark, item.title, item.detail), id=item.id))
        for item in self.extra:
            options.append(Option(_label("", (item.title, "bold"), item.detail), id=item.id))
        if not options:
            options.append(Option(Content.styled("nothing matches", "dim"), id="__none__", disabled=True))
        option_list.add_options(options)
        index = next((i for i, (_s, _o, it) in enumerate(scored) if it.id == self.current and not query), 0)
        option_list.highlighted = index

    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        event.stop()
        if self.loaded:
            self._fill(event.value)

    @on(Input.Submitted, "#picker-filter")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        option_list = self.query_one(OptionList)
        if option_list.highlighted is not None and option_list.option_count:
            self._pick(option_list.get_option_at_index(option_list.highlighted).id)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._pick(event.option.id)

    def _pick(self, ident: str | None) -> None:
        for item in [*self.items, *self.extra]:
            if item.id == ident:
                self.dismiss(item)
                return

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def _label(mark: str, title: str | tuple[str, str], detail: str) -> Content:
    return Content.assemble(mark, title, ("  " + detail, "dim") if detail else "")
