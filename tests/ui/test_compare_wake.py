"""Compare mode on an endpoint that scaled to zero since the last question: each side says it
is waking the replica (with the elapsed time) until /health is ok, then both answers stream;
Esc while waking stops both and gives the prompt back. A scripted client plays the endpoint
(the real scale-to-zero path: tests/backend/test_scale_to_zero.py)."""

from __future__ import annotations

import asyncio

from textual.widgets import Label

from aitk_tui.ui.widgets.compare import CompareScreen
from aitk_tui.ui.widgets.prompt import PromptArea

from .conftest import settle
from .test_chat_wake import SleepyClient
from .test_chat_states import _wait_for

SETTINGS = {"temperature": 0.0, "max_tokens": 8, "system": []}


def _titles(screen: CompareScreen) -> list[str]:
    return [str(side.query_one(".side-title", Label).render()) for side in screen.sides]


async def _open(app, pilot, client: SleepyClient) -> CompareScreen:
    await settle(pilot)
    screen = CompareScreen(("base", "tuned"), lambda: client, SETTINGS, "https://app.example")
    await app.push_screen(screen)
    await settle(pilot)
    screen.query_one(PromptArea).text = "hello"
    await pilot.press("enter")
    return screen


async def test_both_sides_show_the_replica_waking_then_answer(make_app):
    client = SleepyClient()
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(app, pilot, client)
        await _wait_for(pilot, lambda: all("waking the replica… " in t for t in _titles(screen)), 2000)
        assert client.requests == []  # nothing is sent while the replica sleeps
        client.awake.set()
        await _wait_for(pilot, lambda: not screen.streaming, 3000)
        await settle(pilot)
        assert _titles(screen) == ["base", "tuned"]
        assert [side.last_answer for side in screen.sides] == ["Good morning.", "Good morning."]
        assert len(client.requests) == 2


async def test_esc_while_waking_stops_both_and_gives_the_prompt_back(make_app):
    client = SleepyClient()
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(app, pilot, client)
        await _wait_for(pilot, lambda: all("waking the replica… " in t for t in _titles(screen)), 2000)
        await pilot.press("escape")
        await _wait_for(pilot, lambda: not screen.streaming, 2000)
        await settle(pilot)
        await asyncio.sleep(0)
        assert client.requests == [] and _titles(screen) == ["base", "tuned"]
        assert not screen.query_one(PromptArea).read_only
        assert isinstance(app.screen, CompareScreen)  # Esc stopped the waiting; a second Esc closes
