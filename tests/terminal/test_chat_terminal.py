"""The chat in the real ``aitk`` at 80x24, keyboard only: Esc as an answer ends, and a 30-turn chat.

The endpoint is set the way a person does it: ctrl+n opens the chat, shift+tab reaches the
Settings, Enter opens them, the URL and key are typed in.
"""

from __future__ import annotations

import re

import httpx

from tests.fixtures_model import TEST_KEY, make_settings, serve
from tests.ui.stub_openai import StubOpenAI

from .harness import AitkTerminal

IDLE = "Enter send · ctrl+j new line"


def _open_chat(term: AitkTerminal, url: str, key: str) -> None:
    term.wait_for_text("Sign in", timeout=30)
    term.send_keys("ctrl+n")  # New conversation: opens the chat tab, the prompt focused
    term.wait_for_text("New conversation")
    term.wait_for_quiet()
    term.send_keys("shift+tab", "shift+tab", "enter", pause=0.2)  # conversation, then the Settings title
    term.wait_for_text("Endpoint URL")
    term.send_keys("tab", pause=0.2)
    term.type_text(url)
    term.wait_for_text(re.compile(r"Settings · " + re.escape(url)))
    term.wait_for_quiet()
    term.send_keys("tab", pause=0.2)
    term.type_text(key)
    term.wait_for_text("•" * len(key))
    term.send_keys("ctrl+n")  # back to the prompt (and nothing said yet)
    term.wait_for_text(IDLE)


def _status_and_stats(screen: str) -> tuple[str | None, str | None]:
    """The chat's status line and the nearest answer-stats line above it."""
    lines = screen.split("\n")
    at = next((i for i, line in enumerate(lines) if "Esc stop" in line or "Esc to stop" in line
               or "Not sent" in line), None)
    if at is None:
        return None, None
    stats = next((line.strip() for line in reversed(lines[:at]) if line.strip()), None)
    return lines[at], stats


def test_esc_just_as_an_answer_ends_leaves_the_prompt_working(aitk_terminal):
    stub = StubOpenAI(tokens=[f"word{i} " for i in range(12)] + ["LAST-WORD."], tokens_per_s=40).start()
    try:
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, stub.url, stub.api_key)
        for turn in range(2):
            term.type_text(f"question {turn}")
            term.send_keys("enter", pause=0)
            term.wait_for_text("LAST-WORD.", timeout=20)
            term.send_keys("escape", pause=0)  # the instant the last word shows: the answer is ending
            screen = term.wait_until(lambda s: IDLE in s, timeout=10, what="the prompt to come back")
            assert "Generating" not in screen
        # Typed text goes into the prompt and is sent: the chat is not stuck.
        term.type_text("still here?")
        term.send_keys("enter")
        term.wait_until(lambda s: len(stub.requests) == 3 and IDLE in s, timeout=20, what="a third answer")
        assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "still here?"}
    finally:
        stub.stop()


def _completed(running) -> int:
    text = httpx.get(running.base_url + "/metrics", headers=running.headers(), timeout=5).text
    m = re.search(r"^aitk_request_duration_seconds_count(?:\{[^}]*\})? (\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def _counter(running, name: str) -> float:
    text = httpx.get(running.base_url + "/metrics", headers=running.headers(), timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.MULTILINE))


def test_thirty_turns_with_the_demo_model_stay_inside_its_context(aitk_terminal, tiny_model):
    with serve(make_settings(tiny_model, merge=True)) as running:
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, running.base_url, TEST_KEY)
        prompt_tokens: list[float] = []
        seen_notice = False
        last_stats = None
        for turn in range(1, 31):
            before = _counter(running, "aitk_prompt_tokens_total")
            term.type_text(f"turn {turn}: how do adapters and tokens work?")
            term.send_keys("enter", pause=0)

            def ended(screen: str) -> bool:
                status, stats = _status_and_stats(screen)
                return (_completed(running) == turn and status is not None and IDLE in status
                        and stats is not None and stats.startswith("✓") and stats != last_stats)

            screen = term.wait_until(ended, timeout=20, what=f"answer {turn}")
            last_stats = _status_and_stats(screen)[1]
            assert "✕" not in screen and "Not sent" not in screen, screen
            seen_notice = seen_notice or "left out to fit" in screen
            prompt_tokens.append(_counter(running, "aitk_prompt_tokens_total") - before)
        assert seen_notice
        assert max(prompt_tokens) < 1024 and max(prompt_tokens) > 500  # it filled, and stayed inside
        assert 'status="400"' not in httpx.get(running.base_url + "/metrics", headers=running.headers()).text
