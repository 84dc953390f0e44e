"""The command palette: Textual's, with Enter waiting for the search of what was typed.

Textual's palette searches in a worker as the query changes, and Enter acts on the list as
it is. Keys that arrive in one burst (ssh, tmux, a loaded jump box: ctrl+p, a command's
name, Enter) reach Enter before the search of the name has run, so Enter ran the first
command of the list the palette opened with ("Show help"), or of the query typed so far.
Here Enter first waits for the running search, then acts on its list: the command typed,
or nothing when nothing matches.

Its search field is Textual's with the fix of :mod:`..widgets.inputs`: Backspace and the
arrows in a burst apply where they were typed (``depx<BS>loy`` searched "depxlo").
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.command import CommandInput, CommandList, CommandPalette, SearchIcon
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, LoadingIndicator
from textual.worker import WorkerCancelled, WorkerFailed, WorkerState

from ..widgets.inputs import OwnBindingsInOrder


class SearchInput(OwnBindingsInOrder, CommandInput):
    """The palette's search field, its Backspace and arrows kept in typing order."""


class Palette(CommandPalette):
    def compose(self) -> ComposeResult:
        # Textual 8's CommandPalette.compose, with SearchInput for its CommandInput.
        with Vertical(id="--container"):
            with Horizontal(id="--input"):
                yield SearchIcon()
                yield SearchInput(placeholder=self._placeholder, select_on_focus=False)
                if not self.run_on_select:
                    yield Button("\u25b6")
            with Vertical(id="--results"):
                yield CommandList()
                yield LoadingIndicator()

    @on(Input.Submitted)
    async def _submit_when_searched(self, event: Input.Submitted) -> None:
        event.stop()
        event.prevent_default()  # Textual's own handler (below in the MRO) would act on the old list
        for worker in list(self.workers):
            if worker.group == self._GATHER_COMMANDS_GROUP and worker.state in (WorkerState.PENDING,
                                                                                 WorkerState.RUNNING):
                try:
                    await worker.wait()
                except (WorkerCancelled, WorkerFailed):
                    pass  # a newer search replaced it (the next Changed), or it failed: act on the list as is
        self._select_or_command()
