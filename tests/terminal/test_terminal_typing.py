"""Keys typed in one burst (as ssh and tmux deliver them) apply in the order they were typed.

Textual runs an Input's or TextArea's printable keys in the widget but its bound keys
(Backspace, arrows, Delete) only after the key bubbled up to the app, so a burst
``abc<BS>xyz`` came out as ``abcxy`` (Textualize/textual#6605). The real app, in a pty at
80x24, each burst one write.
"""

from __future__ import annotations

import json
import re

from .harness import AitkTerminal, key_bytes
from .test_terminal_keys import CONFIG


def burst(*keys: str) -> str:
    return b"".join(key_bytes(k) for k in keys).decode()


def test_a_burst_with_backspace_and_arrows_types_what_was_typed_in_the_chat_prompt(aitk_terminal, local_project):
    (local_project / "infra" / "inference.config.json").write_text(json.dumps(CONFIG))
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.send_keys("f9")
    term.wait_for_text(re.compile(r"Settings.*app-pty\.example\.invalid"), timeout=30)
    term.type_text(burst(*"abc", "backspace", *"xyz"))
    term.wait_for_text("abxyz")
    # Left, Left, Backspace and more letters in one write: the edit lands mid-word.
    term.type_text(burst("left", "left", "backspace", *"Q1"))
    screen = term.wait_for_text("abQ1yz")
    assert "abxyz" not in screen
