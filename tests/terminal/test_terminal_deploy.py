"""The real ``aitk --local`` at 80x24: F5 asks with the what-if summary, and the Activity
log keeps following provision and deploy by itself (nobody touches focus or scrolls).

The project's ``inference_server/`` is the stand-in server (healthy in ~0.1 s) plus 60
small files, so the deploy writes many more lines than the log has rows.
"""

from __future__ import annotations

import subprocess
import sys

from aitk_tui.config.state import ProjectState
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID
from aitk_tui.project import Project

from ..fixtures_local import STAND_IN_SERVER
from .harness import AitkTerminal

BADGE = "End to follow"


def _stand_in_project(root) -> None:
    server = root / "inference_server"
    for path in server.iterdir():
        if path.is_file() and path.name not in ("requirements.txt", "deps.py"):  # the container's dependency step
            path.unlink()
    (server / "__init__.py").write_text("")
    (server / "__main__.py").write_text(STAND_IN_SERVER)
    for i in range(60):
        (server / f"asset_{i:02d}.txt").write_text(f"asset {i}\n")


def test_provision_asks_first_and_the_log_follows_deploy_without_focus(aitk_terminal, local_project, tmp_path):
    _stand_in_project(local_project)
    # A model folder given to the local cloud: the stand-in ignores it, and no demo model is built.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cloud = ["--local", "--model", str(model)]
    term_env = AitkTerminal(local_project, "--local")._env  # same environment as the app
    subprocess.run([sys.executable, "-m", "aitk_tui", "groups", "create", "rg-pty", "--location", "eastus", *cloud],
                   cwd=local_project, env=term_env, check=True, capture_output=True, timeout=120)
    ProjectState(subscription_id=LOCAL_SUBSCRIPTION_ID, subscription_name="Local", resource_group="rg-pty",
                 location="eastus").save(Project(local_project).state_path)

    term: AitkTerminal = aitk_terminal(*cloud)
    term.wait_for_text("local user", timeout=60)  # signed in to the local cloud
    term.send_keys("f5")
    screen = term.wait_for_text("Enter provision", timeout=60)
    assert "to create" in screen and "containerApps" in screen
    assert "✓ Provision" not in screen
    term.send_keys("enter")

    seen_badge = []

    def finished(title: str):
        def check(screen: str) -> bool:
            if BADGE in screen:
                seen_badge.append(screen)
            return title in screen
        return check

    screen = term.wait_until(finished("✓ Provision"), timeout=90, what="provisioning to finish")
    term.send_keys("f6")
    screen = term.wait_until(finished("✓ Deploy"), timeout=120, what="the deploy to finish")
    screen = term.wait_for_quiet(0.5, timeout=20)
    assert not seen_badge, "the log stopped following by itself:\n" + seen_badge[0]
    assert "done:" in screen, screen  # the end of the log is on screen
