"""The chat pane with a sleeping endpoint: "waking the replica" with the elapsed time and the
replica's latest log line, the answer once /health is ok, and Esc while waking gives the
message back. A scripted client plays the endpoint (the real path: tests/backend/
test_scale_to_zero.py and tests/terminal/test_chat_wake_terminal.py)."""

from __future__ import annotations

import asyncio

from aitk_tui.chat.client import Delta, Finished, HealthStatus, Usage
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.events import Failed, LogLine
from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import settle
from .test_chat_states import _open, _texts, _wait_for

LOADING = HealthStatus(False, "loading", "the model is loading", 503)
HELD = HealthStatus(False, "asleep", "the endpoint is asleep or starting", transport="ConnectTimeout")
OK = HealthStatus(True, "ok", "ready", 200)


class SleepyClient:
    """/health says asleep, then loading, until ``awake`` is set; then the answer streams."""

    def __init__(self) -> None:
        self.awake = asyncio.Event()
        self.probes = 0
        self.requests: list[list[dict]] = []

    async def health(self, *, timeout=None) -> HealthStatus:
        self.probes += 1
        if self.awake.is_set():
            return OK
        return HELD if self.probes == 1 else LOADING

    async def stream_chat(self, messages, **kwargs):
        self.requests.append([dict(m) for m in messages])
        yield Delta("Good morning.")
        yield Finished("stop", Usage(3, 2, 5), 0.01, 50.0, "scripted")

    async def aclose(self) -> None:
        pass


def _logs():
    """The replica log: first no replica (as while scaled to zero), then a loading line."""
    calls = {"n": 0}

    async def source():
        calls["n"] += 1
        if calls["n"] == 1:
            yield Failed("No replica of app is running, so there are no logs to show.")
            return
        yield LogLine('INFO GET path=/health status=503', probe=True)
        yield LogLine("INFO loading the model from /mount/model-cache")
        await asyncio.Event().wait()  # a followed stream stays open

    return source


async def test_a_sleeping_endpoint_shows_waking_then_the_answer(make_app):
    client = SleepyClient()
    app, _ = make_app(chat_client_factory=lambda url, key, verify=True: client)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        app.main.chat.replica_logs = lambda url: _logs()
        await pilot.press(*"hi", "enter")
        await _wait_for(pilot, lambda: any("loading the model" in t for t in _texts(app, ".chat-waking")), 2000)
        waking = _texts(app, ".chat-waking")[-1]
        assert waking.startswith("◌ Waking the replica… ") and " s\n" in waking
        assert "/health" not in waking  # probe access lines are not "the latest line"
        assert "Waking the replica" in str(app.main.chat.query_one("#chat-status").render())
        assert prompt.busy and client.requests == []  # nothing sent while it sleeps
        client.awake.set()
        await _wait_for(pilot, lambda: not app.main.chat.streaming, 2000)
        await settle(pilot)
        assert _texts(app, ".chat-waking")[-1].startswith("✓ The replica is awake after ")
        assert [(t.role, t.content) for t in app.main.chat.turns] == [("user", "hi"), ("assistant", "Good morning.")]
        assert not prompt.read_only


async def test_esc_while_waking_gives_the_message_back(make_app):
    client = SleepyClient()
    app, _ = make_app(chat_client_factory=lambda url, key, verify=True: client)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        await pilot.press(*"hello there", "enter")
        await _wait_for(pilot, lambda: bool(_texts(app, ".chat-waking")), 2000)
        await pilot.press("escape")
        # A short explicit wait: if Esc did not cancel the wake-up, settle() would wait for the
        # replica (it never wakes in this test) until the suite's timeout.
        await _wait_for(pilot, lambda: not app.main.chat.streaming, 1000)
        await settle(pilot)
        assert not app.main.chat.streaming and not prompt.read_only and app.focused is prompt
        assert prompt.text == "hello there"  # given back, selected: Enter sends it again
        assert app.main.chat.turns == [] and not app.main.chat.query(".user-msg") and not app.main.chat.query(".chat-waking")
        assert "cancelled while the replica was waking" in _texts(app, ".chat-notice")[-1]
        assert client.requests == []
        client.awake.set()
        await pilot.press("enter")
        await _wait_for(pilot, lambda: not app.main.chat.streaming and bool(app.main.chat.turns), 2000)
        assert app.main.chat.turns[-1].content == "Good morning."
        assert isinstance(app.focused, PromptArea)


async def test_a_healthy_endpoint_is_sent_at_once_with_one_probe(make_app):
    client = SleepyClient()
    client.awake.set()
    app, _ = make_app(chat_client_factory=lambda url, key, verify=True: client)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(app, pilot)
        await pilot.press(*"hi", "enter")
        await settle(pilot)
        assert client.probes == 1 and not app.main.chat.query(".chat-waking")
        assert app.main.chat.turns[-1].content == "Good morning."


async def test_a_revision_that_failed_to_activate_stops_the_wake_and_says_why(make_app):
    # The ingress holds /health for ever; the platform says no replica can come (Azure's
    # ActivationFailed): the chat stops waiting at once, says why, and gives the message back.
    why = ("Revision app--0000002 failed to activate (ActivationFailed): Deployment Progress Deadline Exceeded. "
           "0/1 replicas ready.")
    client = SleepyClient()
    app, session = make_app(chat_client_factory=lambda url, key, verify=True: client, failed_revision=why)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = await _open(app, pilot)
        app.state.config = InferenceConfig(SUBSCRIPTION_ID="s1", RESOURCE_GROUP_NAME="rg", STORAGE_ACCOUNT_NAME="st",
                                           FILE_SHARE_NAME="sh", ACA_APP_NAME="app", ACA_APP_ENDPOINT="app.example.io")
        app.main.chat.set_endpoint(app.state.config.endpoint_url, "k")  # the app's own: the platform can be asked
        assert app.chat_platform_check("https://elsewhere.example") is None  # never about another endpoint
        await pilot.press(*"hi", "enter")
        await _wait_for(pilot, lambda: bool(app.main.chat.query(".chat-error")), 200)
        await settle(pilot)
        text = " ".join(_texts(app, ".chat-error") + _texts(app, ".chat-error-detail"))
        assert "cannot wake: no replica can start" in text and "Deployment Progress Deadline Exceeded" in text
        assert "revision_failure" in session.calls and client.requests == []
        assert prompt.text == "hi"  # not sent: Enter sends it again


async def test_compare_sides_stop_waking_too_when_the_revision_failed(make_app):
    from aitk_tui.ui.widgets.compare import CompareScreen

    why = "Revision app--1 failed to activate (ActivationFailed): Deployment Progress Deadline Exceeded. 0/1 replicas ready."
    client = SleepyClient()
    app, session = make_app(failed_revision=why)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.state.config = InferenceConfig(SUBSCRIPTION_ID="s1", RESOURCE_GROUP_NAME="rg", STORAGE_ACCOUNT_NAME="st",
                                           FILE_SHARE_NAME="sh", ACA_APP_NAME="app", ACA_APP_ENDPOINT="app.example.io")
        screen = CompareScreen(("a", "b"), lambda: client, {}, app.state.config.endpoint_url,
                               platform_check=app.chat_platform_check)
        await app.push_screen(screen)
        await settle(pilot)
        screen.query_one(PromptArea).text = "hi"
        await pilot.press("enter")
        await _wait_for(pilot, lambda: len(screen.query(".chat-error")) == 2, 200)
        errors = [str(w.render()) for w in screen.query(".chat-error")]
        assert all("no replica can start" in e and "Deployment Progress Deadline Exceeded" in e for e in errors), errors
        assert client.requests == []
