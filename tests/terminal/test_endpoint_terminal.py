"""The real ``aitk --local`` at 80x24, keyboard only: F12 opens the Endpoint tab, which shows
the running replica and the endpoint's health read live from the local cloud; s switches
its log to the system log (what the platform did to the replica)."""

from __future__ import annotations

import subprocess
import sys

from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

from ..fixtures_local import STAND_IN_SERVER
from .harness import AitkTerminal


def test_endpoint_tab_shows_the_replica_health_and_system_log(aitk_terminal, local_project, tmp_path):
    server = local_project / "inference_server"
    for path in server.iterdir():
        if path.is_file() and path.name not in ("requirements.txt", "deps.py"):  # the container's dependency step
            path.unlink()
    (server / "__init__.py").write_text("")
    (server / "__main__.py").write_text(STAND_IN_SERVER)  # healthy in ~0.1 s, no model needed
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cloud = ["--local", "--model", str(model)]
    env = AitkTerminal(local_project, "--local")._env  # the app's own environment

    def aitk(*argv: str) -> None:
        subprocess.run([sys.executable, "-m", "aitk_tui", *argv, *cloud], cwd=local_project, env=env, check=True,
                       capture_output=True, timeout=180)

    aitk("groups", "create", "rg-ep", "--location", "eastus")
    aitk("provision", "--subscription", LOCAL_SUBSCRIPTION_ID, "--resource-group", "rg-ep", "--yes")
    aitk("deploy")

    term: AitkTerminal = aitk_terminal(*cloud)
    term.wait_for_text("local user", timeout=60)
    term.send_keys("f12")
    def ready_row(screen: str) -> str | None:
        return next((line for line in screen.splitlines() if "Running" in line and " yes " in line), None)

    # Every part in one screen: a frame read mid-draw can hold the summary before the tables, and
    # the health probe can pass a moment before the replica's row reads ready.
    screen = term.wait_until(lambda s: all(w in s for w in ("Health: healthy", "Replica", "Revision", "Restarts"))
                             and ready_row(s) is not None,
                             timeout=60, what="the Endpoint tab with a healthy replica, its revision and replica")
    replica_row = ready_row(screen)
    assert replica_row.split()[0]  # the replica's short name
    assert all(len(line) <= 80 for line in screen.splitlines())
    term.send_keys("s")
    term.wait_for_text("AssigningReplica", timeout=30)
    term.wait_for_text("Replica log: system", timeout=10)
