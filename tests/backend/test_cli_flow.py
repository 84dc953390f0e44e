"""The acceptance flow through the ``aitk`` command on the local cloud, and that no secret
(access token, storage key, API key) shows up in any output, file or log record."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aitk_tui.cli import main
from aitk_tui.cloud.sync_plan import format_size
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
    assert out.strip().splitlines()[-1] == f"uploaded {len(files)} files ({format_size(size)}), 0 unchanged, 0 removed"
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
    assert out.strip() == f"uploaded 0 files (0 B), {len(files)} unchanged, 0 removed"

    changed = root / "inference_server" / "__init__.py"
    changed.write_text(changed.read_text() + "\n# changed\n")
    out, err = aitk("deploy", "--local", "--no-wait")
    assert out.strip().startswith(f"uploaded 1 file ({format_size(changed.stat().st_size)}), {len(files) - 1} unchanged, "
                                  "0 removed")
    assert "Restarted revision" in err
    assert (share / "inference_server/__init__.py").read_bytes() == changed.read_bytes()

    gone = root / "inference_server" / files[-1].split("/", 1)[1]
    gone.unlink()
    out, _ = aitk("deploy", "--local", "--no-restart")
    assert out.strip() == f"uploaded 0 files (0 B), {len(files) - 1} unchanged, 1 removed"
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


def _runner(root: Path, tmp_path: Path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg-state"))  # this test's registry of clouds

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aitk_tui", "--project", str(root), *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env=env)

    return run


def test_real_daemon_round_trip(tmp_path):
    """`aitk local start/stop` and a `--local` command in a fresh process, through the real daemon."""
    root = tmp_path / "p"
    (root / "infra" / "provision").mkdir(parents=True)
    run = _runner(root, tmp_path)

    try:
        r = run("subscriptions", "--local", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["id"] == SUB
        pid = json.loads(run("local", "status", "--json").stdout)["pid"]
        assert pid > 0
        # the command says, as it exits, what it leaves running and how to stop it
        assert r.stderr == (f"aitk: note: the local cloud is still running (pid {pid}); stop it with: "
                            f"aitk local stop --project {root}\n")
    finally:
        r = run("local", "stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert json.loads(run("local", "status", "--json").stdout) is None
    r = run("subscriptions", "--local", "--json")  # started again...
    run("local", "stop")
    assert "note: the local cloud is still running" in r.stderr
    r = run("deploy", "--local")
    assert r.returncode == 2 and "note:" not in r.stderr  # ...but a usage error starts nothing


def test_local_stop_all_stops_every_cloud_of_the_user_and_orphaned_replicas(tmp_path):
    from aitk_tui.local.processes import proc_start_time
    from tests.fixtures_local import pid_alive

    a, b = tmp_path / "a", tmp_path / "b"
    run_a, run_b = _runner(a, tmp_path), _runner(b, tmp_path)
    stand_in = None
    try:
        pids = []
        for run in (run_a, run_b):
            r = run("local", "start", "--json")
            assert r.returncode == 0, r.stderr
            pids.append(json.loads(r.stdout)["pid"])
        # b's server dies hard and leaves its (stand-in) model replica behind
        # (it runs in b's state folder, as a replica runs in its share's folder there)
        stand_in = subprocess.Popen(["sleep", "300"], start_new_session=True, cwd=b / ".aitk/local")
        cloud_json = b / ".aitk/local/cloud.json"
        state = json.loads(cloud_json.read_text()) if cloud_json.exists() else {}
        state.setdefault("apps", {})["app"] = {"id": "app", "pid": stand_in.pid,
                                               "pid_start": proc_start_time(stand_in.pid)}
        os.kill(pids[1], signal.SIGKILL)
        wait_until = time.monotonic() + 10
        while pid_alive(pids[1]) and time.monotonic() < wait_until:
            time.sleep(0.05)
        cloud_json.write_text(json.dumps(state))

        r = run_a("local", "stop", "--all")  # from project a: stops b's leftovers too
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"Stopped the local cloud of {a / '.aitk/local'}.\n"
        stand_in.wait(timeout=10)  # killed, not left behind
        assert not pid_alive(pids[0]) and not pid_alive(pids[1])
        assert list((tmp_path / "xdg-state").rglob("*.json")) == []  # the registry is empty
        assert run_a("local", "stop", "--all").stdout == "No local cloud was running.\n"
    finally:
        if stand_in is not None and stand_in.poll() is None:
            stand_in.kill()
        run_a("local", "stop")
        run_b("local", "stop")


def test_groups_with_none_says_how_to_create_one(cli_cloud, local_project, capsys):
    rc, out, err = _aitk(capsys, Path(local_project), "groups", "--local", "--subscription", SUB)
    assert rc == 0 and out == ""
    assert err == (f"No resource groups in subscription {SUB}. Create one with: "
                   "aitk groups create NAME --location LOCATION\n")


def test_what_if_after_provisioning_says_the_resources_are_unchanged(cli_cloud, local_project, capsys):
    root = Path(local_project)
    assert _aitk(capsys, root, "groups", "create", "rg-u", "--location", "westus3", "--local")[0] == 0
    args = ("provision", "--local", "--subscription", SUB, "--resource-group", "rg-u")
    assert _aitk(capsys, root, *args, "--yes")[0] == 0
    rc, out, err = _aitk(capsys, root, *args, "--what-if")
    assert rc == 0, err
    assert out.splitlines()[0] == "What-if: 7 resources unchanged"


def test_a_model_or_adapter_folder_that_cannot_load_is_refused_before_starting(tmp_path, capsys):
    root = tmp_path / "p"
    (root / "infra" / "provision").mkdir(parents=True)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "not-a-folder").write_text("x")
    cases = [
        (["local", "start", "--model", str(tmp_path / "nonexistent")],
         f"The model folder {tmp_path / 'nonexistent'} does not exist. (--model needs a folder with config.json)"),
        (["local", "start", "--model", str(tmp_path / "not-a-folder")], "is a file, not a model folder."),
        (["subscriptions", "--local", "--model", str(tmp_path)], f"{tmp_path} is not a model folder: it has no "
                                                                 "config.json."),
        (["local", "start", "--model", str(tmp_path / "model"), "--adapter", str(tmp_path / "model")],
         "is not a LoRA adapter folder: it has no adapter_config.json."),
    ]
    for argv, words in cases:
        rc, out, err = _aitk(capsys, root, *argv)
        assert rc == 2 and out == "" and err.count("\n") == 1, (argv, err)
        assert err.startswith("aitk: error: ") and words in err, err
    assert not (root / ".aitk").exists()  # no local cloud was started


def test_what_if_summary_in_words():
    from aitk_tui.cloud.provision import what_if_summary

    from aitk_tui.cloud.models import Change

    def changes(*types: str) -> list[Change]:
        return [Change(t, "x", "n") for t in types]

    assert what_if_summary(changes(*["NoChange"] * 7)) == "7 resources unchanged"
    assert what_if_summary(changes("NoChange")) == "1 resource unchanged"
    assert what_if_summary(changes("NoChange", "Create", "Modify", "Create", "Create", "Delete")) == \
        "3 to create, 1 to modify, 1 to delete, 1 unchanged"


def test_quitting_the_tui_says_the_local_cloud_still_runs(tmp_path, capsys, monkeypatch):
    """The notice comes from the entry point once the app has exited (here the app only
    starts the project's local cloud, as the real one does on its first --local call)."""
    from aitk_tui.local import daemon
    from aitk_tui.ui import app as tui

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    root = tmp_path / "p"
    (root / "infra" / "provision").mkdir(parents=True)
    started = []

    def fake_tui(project, *, local, **kw):
        assert local
        started.append(daemon.ensure_running(project.local_cloud_dir).pid)
        return 0

    monkeypatch.setattr(tui, "run", fake_tui)
    try:
        rc, out, err = _aitk(capsys, root, "--local")
        assert rc == 0 and out == ""
        assert err == (f"aitk: note: the local cloud is still running (pid {started[0]}); stop it with: "
                       f"aitk local stop --project {root}\n")
    finally:
        daemon.stop(root / ".aitk" / "local")
    monkeypatch.setattr(tui, "run", lambda project, **kw: 0)  # an app that stopped the cloud itself
    assert _aitk(capsys, root, "--local") == (0, "", "")  # nothing runs: nothing to say
