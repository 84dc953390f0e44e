"""Log lines as people read them: the server's JSON lines become time, level and message
(the raw line kept for who asks), the platform's events carry the time they happened, not
the time they were fetched, and both faces render them the same way."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timezone

from aitk_tui.cli._printer import EventPrinter
from aitk_tui.cloud.logs import console_line, event_time, system_event_line
from inference_server.__main__ import JsonFormatter


def local(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone().strftime("%H:%M:%S")


def test_a_server_json_line_reads_as_time_level_message_and_fields():
    raw = json.dumps({"ts": "2026-12-07T10:00:01.250Z", "level": "error", "logger": "inference_server",
                      "msg": "model load failed", "model": "phi", "exc": "Traceback...\nOSError: no weights"})
    line = console_line(raw, "x7k2p")
    assert (line.time, line.level) == (local("2026-12-07T10:00:01+00:00"), "ERROR")
    assert line.text == "model load failed model=phi | OSError: no weights"
    assert line.shown() == "ERROR model load failed model=phi | OSError: no weights"
    assert line.shown(raw=True) == raw and line.raw == raw


def test_fields_the_message_already_says_are_not_repeated():
    raw = json.dumps({"ts": "2026-12-07T10:00:01Z", "level": "info", "logger": "inference_server",
                      "msg": "runtime: Python 3.11.7, torch 2.13.0+cpu, CPU", "python": "3.11.7",
                      "torch": "2.13.0+cpu", "gpu": None, "workers": 2})
    assert console_line(raw, "r").text == "runtime: Python 3.11.7, torch 2.13.0+cpu, CPU workers=2"


def test_plain_and_odd_lines_stay_as_they_are():
    for text in ("INFO: Uvicorn running", "{not json", '{"level": 3}', "[1, 2]", '"{}"', "{" * 5000):
        line = console_line(text, "r")
        assert (line.text, line.time, line.level, line.raw) == (text, None, None, None)


def test_a_health_probe_access_line_in_json_is_still_a_probe():
    raw = json.dumps({"ts": "2026-12-07T10:00:01Z", "level": "info", "logger": "inference_server.access",
                      "method": "GET", "path": "/health", "status": 200})
    line = console_line(raw, "r")
    assert line.probe and line.text == "method=GET path=/health status=200"


def test_a_platform_event_carries_its_own_time_in_azures_stamp_and_iso():
    aca = json.dumps({"TimeStamp": "2026-12-07 10:56:57 +0000 UTC", "Type": "Warning", "Reason": "ProbeFailed",
                      "Msg": "Probe of StartUp failed", "ReplicaName": "app--1-abc-x7k2p"})
    line = system_event_line(aca)
    assert line.time == local("2026-12-07T10:56:57+00:00") and line.warning and line.source == "x7k2p"
    assert line.text == "ProbeFailed: Probe of StartUp failed" and line.raw == aca
    assert system_event_line('{"TimeStamp": "2026-12-07T10:56:57.5Z", "Msg": "m"}').time == \
        local("2026-12-07T10:56:57+00:00")
    assert event_time("2026-12-07T10:56:57") == "10:56:57"  # no zone: as written
    assert event_time("yesterday") is None and event_time(None) is None and event_time(2**64) is None
    assert system_event_line("not an event").time is None


def test_the_servers_own_stamp_is_utc_and_read_back_to_the_same_instant():
    record = logging.LogRecord("inference_server", logging.INFO, "f", 1, "ready", None, None)
    record.created = datetime(2026, 12, 7, 10, 0, 1, 250000, tzinfo=timezone.utc).timestamp()
    raw = JsonFormatter().format(record)
    assert json.loads(raw)["ts"] == "2026-12-07T10:00:01.250Z"
    assert console_line(raw, "r").time == local("2026-12-07T10:00:01+00:00")


def test_the_cli_prints_time_level_message_or_the_raw_line():
    raw = json.dumps({"ts": "2026-12-07T10:00:01Z", "level": "warning", "logger": "x", "msg": "slow"})
    out = io.StringIO()
    EventPrinter(out=out, err=io.StringIO())(console_line(raw, "r"))
    EventPrinter(out=out, err=io.StringIO(), raw_logs=True)(console_line(raw, "r"))
    assert out.getvalue().splitlines() == [f"{local('2026-12-07T10:00:01+00:00')} WARNING slow", raw]


async def test_aitk_logs_says_when_every_line_it_had_was_a_hidden_probe(capsys):
    """A tail of nothing but /health probes printed nothing and said nothing ("prints none")."""
    import argparse

    from aitk_tui.cli.status import logs

    probe = json.dumps({"ts": "2026-12-07T10:00:01Z", "level": "info", "logger": "inference_server.access",
                        "method": "GET", "path": "/health", "status": 200})

    class Session:
        async def replica_logs(self, config, **kw):
            for _ in range(3):
                yield console_line(probe, "r")

    args = argparse.Namespace(system=False, no_follow=True, tail=3, probes=False)
    assert await logs(Session(), args, EventPrinter(), None) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "(health-probe lines are hidden: --probes shows them)\n"
    args.probes = True
    await logs(Session(), args, EventPrinter(), None)
    assert capsys.readouterr().out.count("path=/health") == 3
