"""A placeholder that imports and mounts its widget later: after the first frame, or on demand.

Textual's ``Lazy`` defers the mount; this also defers the import, so tabs that are not
visible at start cost nothing before the first frame. ``on_demand`` panes (the parameters
form, the chat) are built the first time they are needed: their tab is shown or a command
asks for them.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from textual.widget import MountError, Widget


class LazyPane(Widget):
    DEFAULT_CSS = "LazyPane { display: none; }"

    def __init__(self, factory: Callable[[], Widget], *, on_demand: bool = False) -> None:
        super().__init__()
        self._factory = factory
        self.on_demand = on_demand
        self._built: asyncio.Future[Widget | None] | None = None

    def on_mount(self) -> None:
        if not self.on_demand:
            self.call_after_refresh(self.build)

    async def build(self) -> Widget | None:
        """Mount the real widget in this placeholder's place (once; later calls wait for it)."""
        if self._built is not None:
            return await asyncio.shield(self._built)
        self._built = asyncio.get_running_loop().create_future()
        widget: Widget | None = None
        parent = self.parent
        if parent is not None and parent.is_attached and self.is_attached:  # else: the app is closing
            widget = self._factory()
            try:
                await parent.mount(widget, after=self)
                await self.remove()
            except MountError:
                widget = None
        self._built.set_result(widget)
        return widget
