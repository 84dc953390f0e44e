"""A state read again in place widens its column: "Running" then "ActivationFailed" or
"ScaledToZero" were cut to the first value's width in the Endpoint tab's tables."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from aitk_tui.ui.widgets.endpoint_view import EndpointView


class OneTable(App):
    def compose(self) -> ComposeResult:
        table = DataTable(id="t")
        table.add_columns("Revision", "State")
        yield table


async def test_a_longer_state_read_in_place_is_shown_whole():
    app = OneTable()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(DataTable)
        EndpointView._fill(table, [("0000001", "Running")])
        await pilot.pause()
        for state in ("ActivationFailed", "ScaledToZero", "RunningAtMaxScale"):
            EndpointView._fill(table, [("0000001", state)])  # the same row: updated in place
            await pilot.pause()
            state_column = list(table.columns.values())[1]
            assert state_column.get_render_width(table) >= len(state), state
            assert state in "".join(str(seg.text) for seg in table.render_line(1))
