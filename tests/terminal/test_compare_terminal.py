"""Compare mode in the real ``aitk`` at 80x24, keyboard only, against the real server serving
the base and two adapters: the palette, the two pickers, both answers stacked, Esc closes."""

from __future__ import annotations

from pathlib import Path

from inference_server.demo_model import DEMO_REPLIES
from tests.fixtures_model import TEST_KEY, make_settings, serve

from .harness import AitkTerminal
from .test_chat_terminal import _open_chat, _type_and_send


def test_compare_two_models_from_the_palette(aitk_terminal, tiny_model, second_adapter: Path):
    base_reply, adapter_reply = DEMO_REPLIES["hello"]
    settings = make_settings(tiny_model, merge=None, adapters=[tiny_model.adapter_dir, second_adapter])
    with serve(settings) as running:
        term: AitkTerminal = aitk_terminal()
        _open_chat(term, running.base_url, TEST_KEY)
        term.send_keys("f2")
        term.wait_for_text("Search for commands")
        term.send_keys(*"compare models")
        term.wait_for_text("Compare models")
        term.wait_for_quiet()
        term.send_keys("enter")
        term.wait_for_text("Compare models: the first")
        term.wait_for_text("second-adapter")  # the endpoint's three models are listed
        term.type_text("demo-adapter")
        term.wait_for_quiet()
        term.send_keys("enter")
        term.wait_for_text("Compare demo-adapter with")
        term.type_text("demo-model")
        term.wait_for_quiet()
        term.send_keys("enter")
        term.wait_for_text("Compare · demo-adapter vs demo-model")
        term.wait_for_quiet()
        _type_and_send(term, "hello")
        screen = term.wait_until(lambda s: adapter_reply in s and base_reply in s and s.count("first token") == 2,
                                 timeout=30, what="both answers")
        lines = screen.split("\n")
        # Stacked at 80 columns: the adapter's answer above the base's, each with its statistics.
        assert next(i for i, l in enumerate(lines) if adapter_reply in l) < \
            next(i for i, l in enumerate(lines) if base_reply in l)
        term.wait_for_text("Enter sends to both")
        term.send_keys("escape")  # idle: Esc closes compare mode, back in the chat
        term.wait_for_gone("Compare · demo-adapter")
