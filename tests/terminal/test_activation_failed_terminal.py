"""A revision that never becomes ready, in the real ``aitk --local`` at 80x24, keyboard only.

The project's server hangs at start (it never answers ``/health``) and its template's
startup probe is cut to 1 + 1 x 3 s: the local cloud reports the revision ``ActivationFailed``
("Deployment Progress Deadline Exceeded. 0/1 replicas ready."). The header says so (not
"asleep"), the Endpoint tab (F12) says why, and the chat (F9) stops waking and says why.
(The back-end and the CLI: tests/backend/test_activation_failed_local.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aitk_tui.config.state import ProjectState
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID
from aitk_tui.project import Project

from .harness import AitkTerminal

HANGS = "import time\nprint('inference_server: loading (forever)', flush=True)\ntime.sleep(3600)\n"


def _hanging_project(project: Path) -> None:
    path = project / "infra" / "provision" / "inference.json"
    template = json.loads(path.read_text())
    [app] = [r for r in template["resources"] if r["type"] == "Microsoft.App/containerApps"]
    [startup] = [p for p in app["properties"]["template"]["containers"][0]["probes"] if p["type"] == "Startup"]
    startup.update(initialDelaySeconds=1, periodSeconds=1, failureThreshold=3)
    path.write_text(json.dumps(template, indent=2))
    (project / "inference_server" / "__main__.py").write_text(HANGS)


@pytest.mark.timeout(180)
def test_a_revision_that_cannot_start_is_shown_failed_and_the_chat_says_why(aitk_terminal, local_project):
    _hanging_project(local_project)
    env = AitkTerminal(local_project, "--local")._env

    def aitk(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aitk_tui", *args, "--local"], cwd=local_project, env=env,
                              capture_output=True, text=True, timeout=150)

    for step in (("groups", "create", "rg-hang", "--location", "eastus"),
                 ("provision", "--subscription", LOCAL_SUBSCRIPTION_ID, "--resource-group", "rg-hang", "--yes"),
                 ("deploy", "--no-wait")):
        done = aitk(*step)
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    ProjectState(subscription_id=LOCAL_SUBSCRIPTION_ID, subscription_name="Local", resource_group="rg-hang",
                 location="eastus").save(Project(local_project).state_path)

    term: AitkTerminal = aitk_terminal("--local")
    term.wait_for_text("local user", timeout=60)
    # The header: the revision failed (the app refreshes it every 20 s; F6's deploy is not needed).
    screen = term.wait_for_text("✕ revision failed", timeout=60)
    assert "asleep" not in screen.splitlines()[0]

    term.send_keys("f12")  # the Endpoint tab: Azure's state and why
    screen = term.wait_for_text("Deployment Progress Deadline Exceeded", timeout=30)
    assert "Health: failed: no replica can start" in screen and "ActivationFailed" in screen

    term.send_keys("f9")
    term.wait_for_text("⏎ Send", timeout=30)
    term.wait_for_quiet()
    term.type_text("hello")
    term.wait_for_text("hello")
    term.send_keys("enter", pause=0)
    # One frame with the sentence and its detail (they can reach the terminal in two frames).
    term.wait_until(lambda s: "cannot wake: no replica can start" in s and "Deployment Progress Deadline Exceeded"
                    in s and "Not sent" in s, timeout=60, what="the chat's why, with Azure's words")
