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


def test_a_burst_in_a_parameters_field_saves_what_was_typed_and_f10_asks_before_dropping_it(aitk_terminal,
                                                                                           local_project):
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.send_keys("f7")
    term.wait_for_text("Maximum number of GPU replicas", timeout=30)
    term.wait_for_quiet()  # the form has taken the focus (its start-up commands)
    term.send_keys("tab")  # the replica count (the cursor goes to the end of its "2")
    # Clear it, then "0", Backspace, "10", all in one write (the form saved "100" for "1000").
    term.type_text(burst("backspace", "0", "backspace", *"10"))
    term.wait_for_text(re.compile(r"^ 10\s*$", re.M))
    term.wait_for_text("unsaved changes")
    term.send_keys("f10")
    term.wait_for_text("unsaved changes.")  # the question, not a quit
    term.send_keys("escape")
    term.wait_for_gone("s saves them and quits")
    term.send_keys("f10")
    term.wait_for_text("s saves them and quits")
    term.send_keys("s")
    assert term.proc.wait(15) == 0
    params = json.loads((local_project / "infra" / "provision" / "inference.parameters.json").read_text())
    assert params["parameters"]["maximumInstanceCount"]["value"] == 10


def test_a_burst_of_ctrl_p_a_commands_name_and_enter_runs_that_command(aitk_terminal, local_project):
    """Enter came before the palette had searched the name: it ran the first command of the
    list the palette opened with ("Show help"), whatever was typed."""
    (local_project / "infra" / "inference.config.json").write_text(json.dumps(CONFIG))
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.wait_for_quiet()
    term.type_text(burst("ctrl+p", *"edit inference parameters", "enter"))
    screen = term.wait_for_text("Maximum number of GPU replicas", timeout=30)
    assert "Esc or F1 closes" not in screen  # not the help
    # A name that matches nothing: Enter runs nothing, the palette says so.
    term.type_text(burst("ctrl+p", *"open chat", "enter"))
    screen = term.wait_for_text("No matches found")
    assert "Esc or F1 closes" not in screen
    term.send_keys("escape")
    term.wait_for_gone("No matches found")


def test_a_burst_with_backspace_in_the_palettes_search_searches_what_was_typed(aitk_terminal, local_project):
    (local_project / "infra" / "inference.config.json").write_text(json.dumps(CONFIG))
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.wait_for_quiet()
    term.send_keys("ctrl+p")
    term.wait_for_text("Search for commands")
    term.type_text(burst(*"depx", "backspace", *"loy"))  # the search was "depxlo": no match
    term.wait_for_text("Deploy for inference")
    screen = term.wait_for_text(re.compile(r"🔎 deploy\s*$", re.M))
    assert "depxlo" not in screen and "No matches found" not in screen
