"""The Endpoint tab over the scripted session: F12 shows it, it reads the app while shown
(and stops when hidden), s switches the replica log to the system log, p the probe lines."""

from __future__ import annotations

import pytest

from .conftest import settle
from .fakes import write_config

pytestmark = pytest.mark.timeout(60)


async def _until(pilot, predicate, what: str, rounds: int = 200) -> None:
    for _ in range(rounds):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _table_cells(view, table_id: str) -> list[str]:
    table = view.query_one(table_id)
    return [str(cell) for key in table.rows for cell in table.get_row(key)]


async def test_endpoint_tab_reads_live_and_toggles_logs(make_app, ui_project):
    write_config(ui_project)
    app, session = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f12")
        await _until(pilot, lambda: app.query("#endpoint-view") and app.query_one("#endpoint-view").reads >= 1,
                     "the first read")
        view = app.query_one("#endpoint-view")
        assert app.query_one("#tabs").active == "endpoint" and view.active
        summary = str(view.query_one("#ep-summary").render())
        assert "aiacaappdemo1" in summary and "Health: healthy" in summary and "Scale: min 0, max 2" in summary
        assert _table_cells(view, "#ep-revisions")[:4] == ["0000001", "yes", "100%", "1"]
        assert _table_cells(view, "#ep-replicas")[:5] == ["x7k2p", "0000001", "Running", "yes", "0"]
        await _until(pilot, lambda: "INFO: replica line 2" in view.log_pane.text(), "the console log")

        reads = view.reads
        await _until(pilot, lambda: view.reads > reads, "a second read (live refresh)")

        await pilot.press("s")
        await _until(pilot, lambda: "system event 2" in view.log_pane.text(), "the system log")
        assert "replica_logs:system" in session.calls and view.log_kind == "system"
        assert "Replica log: system" in str(view.query_one("#ep-log-title").render())
        await pilot.press("p")
        assert view.show_probes

        await pilot.press("f8")  # another tab: the view stops reading
        await _until(pilot, lambda: not view.active, "the view to stop")
        await pilot.pause(0.1)
        assert not [w for w in app.workers if w.group.startswith("endpoint") and not w.is_finished]
        calls = session.calls.count("endpoint_status")
        await pilot.pause(2.0)
        assert session.calls.count("endpoint_status") == calls


async def test_endpoint_tab_before_provisioning_says_so(make_app, ui_project):
    app, session = make_app()  # no inference.config.json yet
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await app.main.run_action("show_endpoint")
        await _until(pilot, lambda: app.query("#endpoint-view") and
                     "provision first" in str(app.query_one("#endpoint-view #ep-summary").render()),
                     "the reason")
        assert "endpoint_status" not in session.calls
