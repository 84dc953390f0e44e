"""The chat in the real ``aitk`` at 80x24, keyboard only: Esc as an answer ends, and a 30-turn chat.

The endpoint is set the way a person does it: ctrl+n opens the chat, shift+tab reaches the
Settings, Enter opens them, the URL and key are typed in.
"""

from __future__ import annotations

import re
import time

import httpx

from tests.fixtures_model import TEST_KEY, make_settings, serve
from tests.ui.stub_openai import StubOpenAI

from .harness import AitkTerminal

IDLE = "Enter send · ctrl+j new line"


def _open_chat(term: AitkTerminal, url: str, key: str, max_tokens: int | None = None) -> None:
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
    if max_tokens is not None:  # System prompt, Temperature, then Max tokens: clear it, type ours
        term.send_keys("tab", "tab", "tab", "ctrl+u", pause=0.2)
        term.wait_for_text("max default tokens")
        term.wait_for_quiet()
        term.send_keys(*str(max_tokens), pause=0.1)
        term.wait_for_text(f"max {max_tokens} tokens")
    term.send_keys("ctrl+n")  # back to the prompt (and nothing said yet)
    term.wait_for_text("⏎ Send")  # the footer shows the prompt's keys once it has focus
    term.wait_for_quiet()


def _type_and_send(term: AitkTerminal, text: str) -> None:
    # As a person types: the text lands, then Enter (one burst: see the Esc test's last step).
    term.type_text(text)
    term.wait_for_text(text)
    term.send_keys("enter", pause=0)


def _status_and_stats(screen: str) -> tuple[str | None, str | None]:
    """The chat's status line and the nearest answer-stats line above it."""
    lines = screen.split("\n")
    # From the bottom: an answer may itself say "Press Esc to stop an answer".
    at = next((i for i in reversed(range(len(lines)))
               if lines[i].lstrip().startswith(("Enter send ·", "Generating…", "Not sent."))), None)
    if at is None:
        return None, None
    # The scrollbar's glyphs share the lines (and may fill one): they are not the chat's text.
    text = [line.strip(" ▁▂▃▄▅▆▇█▔▕▏") for line in lines[:at]]
    stats = next((line for line in reversed(text) if line), None)
    return lines[at], stats


def test_esc_just_as_an_answer_ends_leaves_the_prompt_working(aitk_terminal):
    stub = StubOpenAI(tokens_per_s=40).start()
    try:
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, stub.url, stub.api_key)
        for turn in range(2):
            stub.tokens = [f"word{i} " for i in range(12)] + [f"LAST-WORD-{turn}."]
            _type_and_send(term, f"question {turn}")
            term.wait_for_text(f"LAST-WORD-{turn}.", timeout=20)
            term.send_keys("escape", pause=0)  # the instant the last word shows: the answer is ending
            screen = term.wait_until(lambda s: IDLE in s, timeout=10, what="the prompt to come back")
            assert "Generating" not in screen
            # A key right after a lone Esc would read as alt+key: wait as a person would.
            time.sleep(0.5)
        # Typed text goes into the prompt and is sent: the chat is not stuck.
        stub.tokens = [f"word{i} " for i in range(12)] + ["LAST-WORD-2."]
        _type_and_send(term, "still here?")
        # Its own last word: IDLE alone could still be the screen from before this answer began.
        term.wait_until(lambda s: len(stub.requests) == 3 and "LAST-WORD-2." in s and IDLE in s, timeout=20,
                        what=f"a third answer (requests: {[r['messages'][-1] for r in stub.requests]})")
        assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "still here?"}
        assert [r["messages"][-1]["content"] for r in stub.requests[:2]] == ["question 0", "question 1"]
        # Text, a new line and Enter in one read (fast typing over ssh, tmux send-keys): all of
        # it is sent, in order. Enter used to run before the text had landed and was lost.
        term.wait_for_quiet()
        term.type_text("one burst\ntwo\r")  # \n is ctrl+j (a new line), \r is Enter
        try:
            term.wait_until(lambda s: len(stub.requests) == 4 and IDLE in s, timeout=20,
                            what="the burst to be sent")
        except AssertionError as e:
            raise AssertionError(f"{e}\nrequests: {[r['messages'][-1] for r in stub.requests]}") from None
        assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "one burst\ntwo"}
    finally:
        stub.stop()


def _counter(running, name: str) -> float:
    text = httpx.get(running.base_url + "/metrics", headers=running.headers(), timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.MULTILINE))


def test_thirty_turns_with_the_demo_model_stay_inside_its_512_token_context(aitk_terminal, tiny_model):
    with serve(make_settings(tiny_model, merge=True)) as running:
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, running.base_url, TEST_KEY, max_tokens=24)
        prompt_tokens: list[float] = []
        seen_notice = False
        last_stats = None
        for turn in range(1, 31):
            before = _counter(running, "aitk_prompt_tokens_total")
            _type_and_send(term, f"turn {turn}: how do adapters and tokens work?")

            seen: dict = {}

            def ended(screen: str) -> bool:
                status, stats = _status_and_stats(screen)
                seen.update(status=status, stats=stats, last=last_stats,
                            done=_counter(running, "aitk_request_duration_seconds_count"))
                # >= : a prompt the server refused as too long is sent again, shorter (one more request).
                # A new stats line: the screen shows this turn's answer, not the last one's.
                return (seen["done"] >= turn and status is not None and IDLE in status
                        and stats is not None and stats.startswith("✓") and stats != last_stats)

            try:
                screen = term.wait_until(ended, timeout=20, what=f"answer {turn}")
            except AssertionError as e:
                raise AssertionError(f"{e}\nlast check: {seen}") from None
            last_stats = _status_and_stats(screen)[1]
            assert "✕" not in screen and "Not sent" not in screen, screen
            seen_notice = seen_notice or "left out to fit" in screen
            prompt_tokens.append(_counter(running, "aitk_prompt_tokens_total") - before)
        assert seen_notice
        assert 256 < max(prompt_tokens) < 512  # the context filled up, and every prompt stayed inside it


def test_the_next_message_typed_while_an_answer_streams_is_kept_and_sent_after_it(aitk_terminal):
    stub = StubOpenAI(tokens_per_s=6).start()
    try:
        stub.tokens = [f"slow{i} " for i in range(30)] + ["SLOW-END."]  # about 5 s: room to type under load
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, stub.url, stub.api_key)
        _type_and_send(term, "first question")
        term.wait_for_text("slow2", timeout=20)
        term.type_text("typed ahead")  # while the answer streams: it used to be dropped
        screen = term.wait_for_text("typed ahead", timeout=10)
        assert "SLOW-END." not in screen and "Generating" in screen, screen
        term.send_keys("enter", pause=0)  # too early: it waits, and says so
        screen = term.wait_until(lambda s: "streaming" in s, timeout=10, what="the notice that Enter waits")
        flat = re.sub(r"[\s▌▐│┃▎]+", " ", screen)
        assert "still streaming" in flat and "typed ahead" in screen and len(stub.requests) == 1, screen
        term.wait_until(lambda s: "SLOW-END." in s and IDLE in s, timeout=20, what="the first answer to end")
        assert len(stub.requests) == 1
        term.send_keys("enter", pause=0)
        term.wait_until(lambda s: len(stub.requests) == 2, timeout=20, what="the typed-ahead message to be sent")
        assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "typed ahead"}
        assert stub.requests[-1]["messages"][-2]["role"] == "assistant"  # after the first answer, in order
    finally:
        stub.stop()
