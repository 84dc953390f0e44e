"""The header's health comes from the same read as the Endpoint tab while that tab reads the
app: it lagged the tab by its own 20 s refresh (one source, one refresh)."""

from __future__ import annotations

from dataclasses import replace

from .conftest import settle
from .fakes import FakeSession, write_config
from .test_endpoint_view import _until


class GoesDown(FakeSession):
    health = "ok"

    async def endpoint_status(self, config):
        status = await super().endpoint_status(config)
        return replace(status, health=self.health)


async def test_the_header_reads_what_the_endpoint_tab_reads(make_app, ui_project):
    write_config(ui_project)
    session = GoesDown(ui_project)
    app, _ = make_app(session=session)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.state.health == "healthy"  # the header's own probe
        await pilot.press("f12")
        view = app.query_one("#endpoint-view")
        reads = view.reads
        session.health = "failed"  # the revision failed: the tab's next read says so
        await _until(pilot, lambda: view.reads > reads + 1, "two more reads")
        assert app.state.health == "failed"
        session.health = "asleep"
        reads = view.reads
        await _until(pilot, lambda: view.reads > reads + 1, "two more reads")
        assert app.state.health == "asleep"
