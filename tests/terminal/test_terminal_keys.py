"""The real ``aitk`` at 80x24, keyboard only: the palette and F8 from the Chat tab."""

from __future__ import annotations

import json
import re

from .harness import AitkTerminal

# A provisioned-looking project whose endpoint never answers: enough to open the chat.
CONFIG = {"SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "RESOURCE_GROUP_NAME": "rg-pty",
          "STORAGE_ACCOUNT_NAME": "stpty", "FILE_SHARE_NAME": "share", "ACA_APP_NAME": "app-pty",
          "ACA_APP_ENDPOINT": "app-pty.example.invalid"}
ACTIVITY_EMPTY = "No operation yet"


def test_the_palette_opens_filters_and_runs_what_is_chosen(aitk_terminal):
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.send_keys("f2")
    term.wait_until(lambda s: "Search for commands" in s and "Edit inference parameters" in s,
                    what="the palette's commands")
    term.send_keys(*"show activity")
    screen = term.wait_for_gone("Edit inference parameters")  # typing filters the list
    assert "Show activity log" in screen
    term.send_keys("enter")
    # The tab switch and the palette's closing can reach the terminal in separate frames.
    term.wait_until(lambda s: ACTIVITY_EMPTY in s and "Show activity log" not in s,
                    what="the activity log, with the palette closed")
    # ctrl+p opens it too, and Esc closes it again without running anything.
    term.send_keys("ctrl+p")
    term.wait_for_text("Edit inference parameters")
    term.send_keys("escape")
    term.wait_for_gone("Edit inference parameters")
    assert ACTIVITY_EMPTY in term.screen_text()


def test_f8_from_the_chat_shows_the_activity_log(aitk_terminal, local_project):
    (local_project / "infra" / "inference.config.json").write_text(json.dumps(CONFIG))
    term: AitkTerminal = aitk_terminal()
    term.wait_for_text("Sign in", timeout=30)
    term.send_keys("f9")
    # The chat tab: its settings line names the endpoint (the checklist says only "Chat ... F9").
    term.wait_for_text(re.compile(r"Settings.*app-pty\.example\.invalid"), timeout=30)
    term.send_keys("f8")
    screen = term.wait_for_text(ACTIVITY_EMPTY)
    assert not re.search(r"Settings.*app-pty", screen)
    # And back: F9 again shows the chat, F8 the log, every time.
    term.send_keys("f9")
    term.wait_for_text(re.compile(r"Settings.*app-pty\.example\.invalid"))
    term.send_keys("f8")
    term.wait_for_text(ACTIVITY_EMPTY)
