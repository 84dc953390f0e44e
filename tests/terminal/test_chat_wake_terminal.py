"""A chat to a sleeping replica in the real ``aitk --local`` at 80x24, keyboard only.

The local cloud runs with ``AITK_LOCAL_IDLE_S=2``: after the deploy the replica (the real
inference server on the tiny model) scales to zero; F9 then Enter in the chat shows
"Waking the replica" with the elapsed time, and the answer once it is up. (``aitk chat``
on a sleeping replica: tests/backend/test_scale_to_zero.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aitk_tui.config.state import ProjectState
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID
from aitk_tui.project import Project

from .harness import AitkTerminal

IDLE_S = "2"


def _scaled_to_zero(project: Path) -> int:
    """How many times the app has scaled to zero (from the local cloud's system log)."""
    n = 0
    for path in (project / ".aitk" / "local" / "logs").glob("*.system.jsonl"):
        for line in path.read_text().splitlines():
            try:
                n += json.loads(line).get("Reason") == "ScaledToZero"
            except ValueError:
                pass
    return n


def _wait_asleep(project: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _scaled_to_zero(project):
        assert time.monotonic() < deadline, "the replica did not scale to zero"
        time.sleep(0.3)


@pytest.mark.timeout(180)
def test_the_tui_chat_wakes_a_sleeping_replica(aitk_terminal, local_project, tiny_model):
    cloud = ["--local", "--model", str(tiny_model.model_dir), "--adapter", str(tiny_model.adapter_dir)]
    env = AitkTerminal(local_project, "--local", env={"AITK_LOCAL_IDLE_S": IDLE_S})._env

    def aitk(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aitk_tui", *args, *cloud], cwd=local_project, env=env,
                              capture_output=True, text=True, timeout=150)

    for step in (("groups", "create", "rg-wake", "--location", "eastus"),
                 ("provision", "--subscription", LOCAL_SUBSCRIPTION_ID, "--resource-group", "rg-wake", "--yes"),
                 ("deploy",)):
        done = aitk(*step)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    ProjectState(subscription_id=LOCAL_SUBSCRIPTION_ID, subscription_name="Local", resource_group="rg-wake",
                 location="eastus").save(Project(local_project).state_path)
    _wait_asleep(local_project)

    term: AitkTerminal = aitk_terminal(*cloud, env={"AITK_LOCAL_IDLE_S": IDLE_S})
    term.wait_for_text("local user", timeout=60)
    term.send_keys("f9")  # Go to inference endpoint: the app's URL and key, the prompt focused
    term.wait_for_text("⏎ Send", timeout=30)
    term.wait_for_quiet()
    term.type_text("hello")
    term.wait_for_text("hello")
    term.send_keys("enter", pause=0)
    screen = term.wait_for_text("Waking the replica…", timeout=30)
    assert "Esc to cancel" in screen
    screen = term.wait_for_text("The replica is awake after", timeout=90)
    screen = term.wait_until(lambda s: "✓ first token" in s, timeout=60, what="the answer")
    assert "✕" not in screen and "Not sent" not in screen, screen
