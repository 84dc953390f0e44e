"""``aitk chat`` refuses what it cannot send as a usage error (exit 2), before signing in or
sending anything: an empty message went out with exit 0, and a temperature or token count the
endpoint refuses cost a round trip first."""

from __future__ import annotations

import pytest

import aitk_tui.backend
from aitk_tui.cli import main


@pytest.fixture
def never_opens(monkeypatch):
    """Anything reaching for a session or the network fails the test."""
    async def refuse(*args, **kwargs):
        raise AssertionError("a session was opened")

    monkeypatch.setattr(aitk_tui.backend, "open_session", refuse)


@pytest.mark.parametrize("argv, says", [
    (["chat", ""], "The message is empty"),
    (["chat", "   \n"], "The message is empty"),
    (["chat", "hi", "--temperature", "nan"], "--temperature must be a number from 0 to 2"),
    (["chat", "hi", "--temperature", "inf"], "--temperature must be a number from 0 to 2"),
    (["chat", "hi", "--temperature", "-0.1"], "--temperature must be a number from 0 to 2"),
    (["chat", "hi", "--temperature", "2.5"], "--temperature must be a number from 0 to 2"),
    (["chat", "hi", "--max-tokens", "0"], "--max-tokens must be a whole number from 1"),
    (["chat", "hi", "--max-tokens", "-5"], "--max-tokens must be a whole number from 1"),
    (["chat", "hi", "--max-tokens", str(2**64)], "--max-tokens must be a whole number from 1"),
])
def test_what_cannot_be_sent_is_a_usage_error_before_anything_runs(argv, says, tmp_path, capsys, never_opens):
    assert main(["--project", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aitk: error: ") and says in err and err.count("\n") == 1
