"""The Endpoint tab's log shows the server's JSON lines as time, level and message, each at
the time it happened (not when it was fetched), the level coloured; r shows them as sent."""

from __future__ import annotations

import asyncio
import json

from rich.text import Text

from aitk_tui.cloud.logs import console_line, system_event_line
from aitk_tui.ui.widgets.log_pane import LevelHighlighter

from .conftest import settle
from .fakes import FakeSession, write_config

RAW = [json.dumps({"ts": "2026-12-07T03:04:05", "level": "error", "logger": "inference_server",
                   "msg": f"model load failed {i}"}) for i in range(4)]
EVENT = json.dumps({"TimeStamp": "2026-12-07 01:02:03", "Type": "Normal", "Reason": "ContainerStarted",
                    "Msg": "started", "ReplicaName": "app--1-abc-x7k2p"})


class StructuredLogs(FakeSession):
    released: asyncio.Event | None = None

    async def replica_logs(self, config, *, follow=True, tail_lines=100, kind="console"):
        if kind == "system":
            yield system_event_line(EVENT)
        else:
            for raw in RAW[:2]:
                yield console_line(raw, "x7k2p")
            await self.released.wait()
            for raw in RAW[2:]:
                yield console_line(raw, "x7k2p")
        await asyncio.Event().wait()


async def _until(pilot, predicate, what: str) -> None:
    for _ in range(250):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_server_lines_show_their_own_time_and_level_and_r_shows_them_raw(make_app, ui_project):
    write_config(ui_project)
    session = StructuredLogs(ui_project)
    session.released = asyncio.Event()
    app, _ = make_app(session=session)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f12")
        await _until(pilot, lambda: app.query("#endpoint-view") and "failed 1" in app.query_one("#endpoint-view")
                     .log_pane.text(), "the first lines")
        view = app.query_one("#endpoint-view")
        assert "03:04:05 [x7k2p] ERROR model load failed 0" in view.log_pane.text()
        await pilot.press("r")
        session.released.set()
        await _until(pilot, lambda: "failed 3" in view.log_pane.text(), "the lines after r")
        assert f"03:04:05 [x7k2p] {RAW[2]}" in view.log_pane.text()
        await pilot.press("r", "s")  # formatted again, and the system log
        await _until(pilot, lambda: "ContainerStarted" in view.log_pane.text(), "the system event")
        assert "01:02:03 [x7k2p] ContainerStarted: started" in view.log_pane.text()


def test_the_level_is_coloured_after_the_time_and_source_only():
    highlight = LevelHighlighter()
    line = Text("03:04:05 [x7k2p] ERROR model load failed: WARNING later")
    highlight.highlight(line)
    assert [(s.start, s.end, str(s.style)) for s in line.spans] == [(17, 22, "bold red")]
    plain = Text("03:04:05 [x7k2p] all fine, no ERROR at the start")
    highlight.highlight(plain)
    assert plain.spans == []
