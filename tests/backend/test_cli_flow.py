"""The acceptance flow through the ``aitk`` command on the local cloud, and that no secret
(access token, storage key, API key) shows up in any output, file or log record."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from aitk_tui.cli import main
from aitk_tui.config.inference_config import KEYS
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB

REPO = Path(__file__).resolve().parents[2]


def _aitk(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--project", str(root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _server_files(root: Path) -> list[str]:
    base = root / "inference_server"
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name != ".DS_Store")


def test_acceptance_flow_and_no_secret_leaks(cli_cloud, local_project, local_factory, capsys, caplog,
                                             issued_tokens):
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "aitk_tui", "httpx", "httpcore", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    root = Path(local_project)
    seen_out: list[str] = []

    def aitk(*argv: str, expect: int = 0) -> tuple[str, str]:
        rc, out, err = _aitk(capsys, root, *argv)
        seen_out.extend([out, err])
        assert rc == expect, (argv, rc, out, err)
        return out, err

    out, _ = aitk("subscriptions", "--local", "--json")
    assert [s["id"] for s in json.loads(out)] == [SUB]

    out, _ = aitk("groups", "create", "rg-demo", "--location", "eastus", "--local")
    assert "rg-demo" in out
    out, _ = aitk("groups", "--local", "--json", "--subscription", SUB)
    assert {"name": "rg-demo", "location": "eastus"} in json.loads(out)

    out, err = aitk("provision", "--subscription", SUB, "--resource-group", "rg-demo", "--local", "--yes")
    config = json.loads((root / "infra/inference.config.json").read_text())
    assert list(config) == list(KEYS) and all(config.values())
    assert config["SUBSCRIPTION_ID"] == SUB and config["RESOURCE_GROUP_NAME"] == "rg-demo"
    assert "Succeeded  Microsoft.App/containerApps" in err  # per-resource progress rows
    state = json.loads((root / ".aitk/state.json").read_text())
    assert state["subscription_id"] == SUB and state["resource_group"] == "rg-demo"  # remembered

    files = _server_files(root)
    share = cli_cloud.files_root / config["STORAGE_ACCOUNT_NAME"] / config["FILE_SHARE_NAME"]
    out, err = aitk("deploy", "--local", "--timeout", "120")
    size = sum((root / f).stat().st_size for f in files)
    assert out.strip().splitlines()[-1] == f"uploaded {len(files)} files ({size} bytes), 0 unchanged, 0 removed"
    assert "/health ok" in err
    for f in files:  # the share root is the project root: /mount/inference_server/...
        assert (share / f).read_bytes() == (root / f).read_bytes()

    out, _ = aitk("status", "--local", "--json")
    status = json.loads(out)
    assert status["healthy"] is True and status["provisioning_state"] == "Succeeded"

    out, err = aitk("chat", "Hello!", "--local", "--max-tokens", "8", "--temperature", "0")
    assert out.strip(), err  # the demo model's (random) reply streamed to stdout

    out, _ = aitk("logs", "--local", "--no-follow", "--tail", "20")
    assert out.strip()

    out, _ = aitk("deploy", "--local", "--no-restart")
    assert out.strip() == f"uploaded 0 files (0 bytes), {len(files)} unchanged, 0 removed"

    changed = root / "inference_server" / "__init__.py"
    changed.write_text(changed.read_text() + "\n# changed\n")
    out, err = aitk("deploy", "--local", "--no-wait")
    assert out.strip().startswith(f"uploaded 1 files ({changed.stat().st_size} bytes), {len(files) - 1} unchanged, "
                                  "0 removed")
    assert "Restarted revision" in err
    assert (share / "inference_server/__init__.py").read_bytes() == changed.read_bytes()

    gone = root / "inference_server" / files[-1].split("/", 1)[1]
    gone.unlink()
    out, _ = aitk("deploy", "--local", "--no-restart")
    assert out.strip() == f"uploaded 0 files (0 bytes), {len(files) - 1} unchanged, 1 removed"
    assert not (share / files[-1]).exists()

    # -- secrets: none in any output, event line, file aitk wrote, or log record --------------
    app = local_factory.container_apps(SUB).container_apps.list_secrets("rg-demo", config["ACA_APP_NAME"])
    api_key = next(s["value"] for s in app["value"] if s["name"] == "inference-api-key")
    keys = local_factory.storage(SUB).storage_accounts.list_keys("rg-demo", config["STORAGE_ACCOUNT_NAME"])
    storage_keys = [k["value"] for k in keys["keys"]]
    secrets = [api_key, *storage_keys, *issued_tokens]
    assert len(api_key) >= 32 and len(issued_tokens) >= 3
    assert any(r.name.startswith("azure.core.pipeline") for r in caplog.records)  # the SDK's HTTP log was seen
    logs = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    written = "".join(p.read_text(errors="replace") for p in (root / "infra").rglob("*.json"))
    written += (root / ".aitk/state.json").read_text()
    haystacks = {"output": "\n".join(seen_out), "logs": logs, "files": written}
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"


def test_provision_refuses_without_yes_when_not_a_terminal(local_project, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    rc, out, err = _aitk(capsys, Path(local_project), "provision", "--local", "--subscription", SUB,
                         "--resource-group", "rg-demo")
    assert rc == 2 and out == ""
    assert err == ("aitk: error: Refusing to provision without confirmation: there is no terminal to ask on. "
                   "(pass --yes to provision, or --what-if to preview)\n")


def test_deploy_before_provisioning_is_a_clear_config_error(local_project, capsys):
    rc, out, err = _aitk(capsys, Path(local_project), "deploy", "--local")
    assert rc == 2
    assert err.startswith("aitk: error: inference.config.json is missing SUBSCRIPTION_ID") and err.count("\n") == 1


def test_what_if_previews_without_changing_anything(cli_cloud, local_project, capsys):
    root = Path(local_project)
    before = (root / "infra/inference.config.json").read_bytes()
    assert _aitk(capsys, root, "groups", "create", "rg-w", "--location", "westus3", "--local")[0] == 0
    rc, out, err = _aitk(capsys, root, "provision", "--local", "--subscription", SUB, "--resource-group", "rg-w",
                         "--what-if")
    assert rc == 0
    assert "What-if: 7 to create" in out
    assert "Create     Microsoft.App/containerApps aiacaapp" in out
    assert (root / "infra/inference.config.json").read_bytes() == before


def test_bad_group_name_is_rejected_before_any_call(cli_cloud, local_project, capsys):
    rc, _, err = _aitk(capsys, Path(local_project), "groups", "create", "bad name", "--location", "eastus",
                       "--local")
    assert rc == 2 and "Resource group name 'bad name' is not valid" in err and err.count("\n") == 1
    rc, _, err = _aitk(capsys, Path(local_project), "groups", "create", "rg-x", "--location", "moon", "--local")
    assert rc == 2 and "not a known Azure region" in err


def test_real_daemon_round_trip(tmp_path):
    """`aitk local start/stop` and a `--local` command in a fresh process, through the real daemon."""
    root = tmp_path / "p"
    (root / "infra" / "provision").mkdir(parents=True)

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aitk_tui", "--project", str(root), *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    try:
        r = run("subscriptions", "--local", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["id"] == SUB
        r = run("local", "status", "--json")
        assert json.loads(r.stdout)["pid"] > 0
    finally:
        r = run("local", "stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert json.loads(run("local", "status", "--json").stdout) is None
