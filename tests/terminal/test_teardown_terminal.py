"""The real ``aitk --local`` at 80x24, keyboard only: F5's dialog shows the cost estimate; the
palette's "Upload model/adapter…" checks the folder, uploads and sets the parameters; the two
tear-downs ask first (Enter for the app; the group's name typed out for everything), delete
nothing on Esc or a wrong word, and report progress in the Activity tab."""

from __future__ import annotations

import json
import subprocess
import sys

from aitk_tui.config.state import ProjectState
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID
from aitk_tui.project import Project

from .harness import AitkTerminal


def _aitk(local_project, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aitk_tui", *args], cwd=local_project, env=env,
                          capture_output=True, text=True, timeout=120)


def _palette(term: AitkTerminal, query: str) -> None:
    term.send_keys("f2")
    term.wait_for_text("Search", timeout=10)
    term.type_text(query)
    term.wait_for_text(query, timeout=10)
    term.send_keys("enter")


def test_cost_in_provision_dialog_upload_and_both_teardowns(aitk_terminal, local_project, tmp_path):
    model = tmp_path / "model"  # a model folder for the local cloud: no demo model is built
    model.mkdir()
    (model / "config.json").write_text("{}")
    cloud = ["--local", "--model", str(model)]
    env = AitkTerminal(local_project, "--local")._env
    assert _aitk(local_project, env, "groups", "create", "rg-down", "--location", "eastus", *cloud).returncode == 0
    done = _aitk(local_project, env, "provision", "--subscription", LOCAL_SUBSCRIPTION_ID, "--resource-group",
                 "rg-down", "--yes", *cloud)
    assert done.returncode == 0, done.stderr
    ProjectState(subscription_id=LOCAL_SUBSCRIPTION_ID, subscription_name="Local", resource_group="rg-down",
                 location="eastus").save(Project(local_project).state_path)

    term: AitkTerminal = aitk_terminal(*cloud)
    term.wait_for_text("local user", timeout=60)

    # C: the provision dialog carries the estimate at min and max replicas, labelled as one.
    term.send_keys("f5")
    screen = term.wait_for_text("Enter provision", timeout=60)
    assert "Cost estimate:" in screen and "per running NVIDIA A100 replica" in screen, screen
    assert "min 0: $0.00/h" in screen and "max 2: $" in screen and "unverified" in screen, screen
    term.send_keys("escape")
    term.wait_for_gone("Enter provision", timeout=10)

    # Upload model/adapter…: a folder that is not an adapter is refused in the dialog.
    adapter = tmp_path / "my-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 3000)
    _palette(term, "Upload model")
    term.wait_for_text("Adapter folder", timeout=10)
    term.type_text(str(tmp_path))
    term.send_keys("enter")
    term.wait_for_text("it has no adapter_config.json", timeout=10)
    term.send_keys("ctrl+u")
    term.type_text(str(adapter))
    term.wait_for_text("my-adapter", timeout=10)  # as a person would: the path is in before Tab
    term.send_keys("tab")
    term.wait_for_quiet(0.3, timeout=10)
    term.type_text("sql")
    term.wait_for_text("│ sql", timeout=10)
    term.send_keys("enter")
    screen = term.wait_for_text("✓ Upload model/adapter", timeout=60)
    assert "uploaded models/sql/adapter/" in screen or "Parameter adapters" in screen, screen
    params = json.loads((local_project / "infra/provision/inference.parameters.json").read_text())
    assert params["parameters"]["adapters"]["value"] == ["sql=/mount/models/sql/adapter"]

    # B, the app alone: Enter/Esc; Esc deletes nothing.
    _palette(term, "Tear down (delete")
    screen = term.wait_for_text("Enter delete", timeout=30)
    assert "containerApps" in screen and "Kept: the storage account and share" in screen, screen
    term.send_keys("escape")
    term.wait_for_gone("Enter delete", timeout=10)

    # B, everything: the plan first; a wrong word deletes nothing; Esc leaves; the name deletes.
    _palette(term, "Tear down everything")
    screen = term.wait_for_text("(or delete)", timeout=30)
    assert "Tear down everything: delete" in screen and "rg-down" in screen, screen
    assert "containerApps" in screen and "storageAccounts" in screen and "managedEnvironments" in screen, screen
    term.type_text("rg-wrong")
    term.send_keys("enter")  # at once: the whole text is checked, not what arrived before Enter
    term.wait_for_text("Nothing deleted: type rg-down or delete exactly", timeout=10)
    term.send_keys("escape")
    term.wait_for_gone("(or delete)", timeout=10)
    scale = _aitk(local_project, env, "scale", "--json", *cloud)
    assert json.loads(scale.stdout).get("provisioned", True) is not False, scale.stdout  # still there

    _palette(term, "Tear down everything")
    term.wait_for_text("(or delete)", timeout=30)
    term.type_text("rg-down")
    term.send_keys("enter")
    screen = term.wait_for_text("✓ Tear down everything", timeout=90)
    assert "Deleted" in screen, screen
    scale = _aitk(local_project, env, "scale", "--json", *cloud)
    assert json.loads(scale.stdout) == {"name": json.loads((local_project / "infra/inference.config.json")
                                                           .read_text())["ACA_APP_NAME"], "provisioned": False}
