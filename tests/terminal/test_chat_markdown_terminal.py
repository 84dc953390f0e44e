"""A long Markdown answer streamed fast into the real ``aitk`` at 80x24, keyboard only.

Code, tables and lists at 2,000 tokens/s are drawn as Markdown (no raw syntax left on the
screen), and Esc in the middle of a long answer stops it and gives the prompt back.
"""

from __future__ import annotations

from tests.ui.stub_openai import StubOpenAI, demo_tokens

from .harness import AitkTerminal
from .test_chat_terminal import IDLE, _open_chat, _type_and_send


def _long_answer(end: str) -> list[str]:
    # Whole rounds of each shape (66, 36 and 13 tokens), so that no code block is left open.
    return [*demo_tokens(66 * 7, "code"), *demo_tokens(36 * 12, "tables"), *demo_tokens(13 * 30, "lists"), end]


def test_a_long_markdown_answer_is_drawn_as_markdown_and_esc_stops_one_midway(aitk_terminal):
    stub = StubOpenAI(tokens=_long_answer("END-OF-ANSWER."), tokens_per_s=2000, burst=10).start()
    try:
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, stub.url, stub.api_key)
        _type_and_send(term, "a long answer")
        screen = term.wait_until(lambda s: "END-OF-ANSWER." in s and IDLE in s, timeout=30,
                                 what="the whole answer and the prompt back")
        assert "•" in screen  # the list at its end, drawn with bullets
        assert "- item" not in screen and "```" not in screen and "| ---" not in screen  # no raw Markdown
        assert "tok/s" in screen  # the answer's stats line

        stub.tokens = _long_answer("NEVER-SHOWN.")
        stub.tokens_per_s = 150  # about ten seconds of answer
        stub.burst = 1
        _type_and_send(term, "another long one")
        term.wait_until(lambda s: "Generating" in s and "Compare" in s, timeout=20, what="the answer under way")
        term.send_keys("escape", pause=0)
        screen = term.wait_until(lambda s: IDLE in s, timeout=10, what="the prompt after Esc")
        assert "stopped" in screen and "NEVER-SHOWN." not in screen and "Generating" not in screen

        stub.tokens = ["Still ", "here."]
        stub.tokens_per_s = None
        _type_and_send(term, "still there?")
        term.wait_until(lambda s: "Still here." in s and IDLE in s, timeout=20, what="a third answer")
        assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "still there?"}
    finally:
        stub.stop()
