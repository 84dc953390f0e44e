"""Replica log lines as a person reads them: a short replica tag, and the /health probes'
access lines (95 % of the output) hidden unless asked for, in the CLI and the TUI alike."""

from __future__ import annotations

import argparse
import asyncio
import io

import pytest

from aitk_tui.cli._printer import EventPrinter
from aitk_tui.cli.status import logs
from aitk_tui.cloud.logs import is_probe, short_replica
from aitk_tui.events import LogLine

PROBES = [
    '2026-11-30T04:00:00 INFO inference_server.access: method=GET path=/health status=200 duration_ms=0.4',
    '{"ts": "2026-11-30T04:00:00", "logger": "inference_server.access", "path": "/health", "status": 200}',
    'INFO:     10.0.0.7:51234 - "GET /health HTTP/1.1" 200 OK',
    '10.0.0.7 - - [30/Nov/2026] "HEAD /health/ HTTP/1.1" 200 -',
    'method=GET path=/health',
]
NOT_PROBES = [
    'method=POST path=/v1/chat/completions status=200 duration_ms=812.0',
    'INFO:     "GET /healthcheck-dashboard HTTP/1.1" 200 OK',
    'the model is loading; /health answers 503 until it is ready',
    'path=/healthz status=200',
    '', 'x' * 100_000, '\x1b[31m"GET /v1/models HTTP/1.1" 200\x1b[0m',
]


@pytest.mark.parametrize("line", PROBES)
def test_health_probe_access_lines_are_recognised(line):
    assert is_probe(line)


@pytest.mark.parametrize("line", NOT_PROBES)
def test_other_lines_are_not_probes(line):
    assert not is_probe(line)


@pytest.mark.parametrize("name, short", [
    ("aiacaappdemo1--0000001-646779b4b6-x7k2p", "x7k2p"),  # 42 characters in Azure
    ("rev1-0a1b2c3d4e-5f6a7", "5f6a7"), ("replica", "replica"), ("", ""), ("trailing-", "trailing-"),
])
def test_the_replica_tag_is_short(name, short):
    assert short_replica(name) == short
    assert len(short_replica(name)) <= 12


class _Session:
    async def replica_logs(self, config, follow=True, tail_lines=100, kind="console"):
        for text in ["server starting", PROBES[0], PROBES[2], "model loaded"]:
            yield LogLine(text, "x7k2p", probe=is_probe(text))


@pytest.mark.parametrize("probes, expected", [
    (False, ["server starting", "model loaded"]),
    (True, ["server starting", PROBES[0], PROBES[2], "model loaded"]),
])
def test_aitk_logs_hides_probes_unless_asked(probes, expected):
    out = io.StringIO()
    args = argparse.Namespace(no_follow=True, tail=10, probes=probes, system=False)
    assert asyncio.run(logs(_Session(), args, EventPrinter(err=io.StringIO(), out=out), None)) == 0
    assert out.getvalue().splitlines() == expected


def test_the_logs_command_takes_probes():
    from aitk_tui.cli import build_parser

    assert build_parser().parse_args(["logs", "--probes"]).probes is True
    assert build_parser().parse_args(["logs"]).probes is False
