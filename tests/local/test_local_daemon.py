"""The detached server: start once per state folder, status, stop -- and no process is left
behind, not even the replicas of a server that was killed."""

from __future__ import annotations

import json
import os
import signal
import ssl
import urllib.request
from pathlib import Path

import pytest

from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.errors import AitkError
from aitk_tui.local import daemon
from aitk_tui.local.credential import LocalCredential
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import pid_alive, deploy, upload_stand_in, wait_for



def _replica_pid(info, endpoint: str) -> int | None:
    try:
        ctx = ssl.create_default_context(cafile=info.ca_bundle)
        with urllib.request.urlopen(f"https://{endpoint}/health", context=ctx, timeout=1) as r:
            return json.loads(r.read())["pid"]
    except OSError:
        return None


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "project" / ".aitk" / "local"
    yield d
    daemon.stop(d)


def test_start_status_stop_leaves_nothing_behind(state_dir, local_project):
    assert daemon.status(state_dir) is None
    info = daemon.ensure_running(state_dir, op_delay_s=0.01)
    assert info.endpoints.is_local and info.endpoints.arm_url == info.url
    assert Path(info.ca_bundle).is_file() and json.loads((state_dir / "server.json").read_text())["pid"] == info.pid
    assert daemon.ensure_running(state_dir).pid == info.pid  # reused, not started twice
    assert daemon.status(state_dir).url == info.url

    factory = ClientFactory(info.endpoints, LocalCredential(state_dir))
    out = deploy(factory, "rg1", local_project, modelPath="/mount")
    key = factory.storage(SUB).storage_accounts.list_keys("rg1", out["STORAGE_ACCOUNT_NAME"]).as_dict()["keys"][0]["value"]
    upload_stand_in(factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key))
    apps = factory.container_apps(SUB)
    app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
    apps.container_apps_revisions.restart_revision("rg1", app.name, app.latest_revision_name)
    replica = wait_for(lambda: _replica_pid(info, out["ACA_APP_ENDPOINT"]), what="the replica")

    # the server dies hard: its replica is orphaned; the next start cleans it up
    os.kill(info.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(info.pid), what="the server to die")
    assert pid_alive(replica)
    assert daemon.status(state_dir) is None and not (state_dir / "server.json").exists()  # stale file removed
    info2 = daemon.ensure_running(state_dir, op_delay_s=0.01)
    assert info2.pid != info.pid and info2.url == info.url  # same port: clients re-attach
    wait_for(lambda: not pid_alive(replica), what="the orphaned replica to be killed")
    replica2 = wait_for(lambda: _replica_pid(info2, out["ACA_APP_ENDPOINT"]), what="the replica to restart")

    assert daemon.stop(state_dir) is True
    assert not pid_alive(info2.pid) and not pid_alive(replica2)
    assert daemon.status(state_dir) is None and not (state_dir / "server.json").exists()
    assert daemon.stop(state_dir) is False


def test_a_stale_server_json_is_replaced(state_dir):
    state_dir.mkdir(parents=True)
    (state_dir / "server.json").write_text(json.dumps({"pid": 2 ** 22 + 12345, "url": "https://127.0.0.1:1",
                                                       "ca_bundle": "/nonexistent"}))
    assert daemon.status(state_dir) is None
    info = daemon.ensure_running(state_dir)
    assert pid_alive(info.pid)


def test_a_server_that_cannot_start_is_reported_with_its_log(state_dir):
    (state_dir / "tls").mkdir(parents=True)
    (state_dir / "tls" / "ca.pem").write_text("not a certificate")
    (state_dir / "tls" / "ca.key").write_text("not a key")
    with pytest.raises(AitkError) as err:
        daemon.ensure_running(state_dir)
    assert "did not start" in err.value.message
    assert "PEM" in err.value.detail  # the server log's tail says why


def test_one_server_per_state_folder(make_local_cloud, state_dir):
    make_local_cloud(state_dir)
    with pytest.raises(AitkError, match="already serves"):
        make_local_cloud(state_dir)
    with pytest.raises(AitkError) as err:  # a detached server is refused the same way
        daemon.ensure_running(state_dir)
    assert "already serves" in err.value.detail


def test_ctrl_c_while_it_starts_leaves_no_server_behind(state_dir, monkeypatch):
    """`aitk local start` (or any `--local` command starting the cloud) interrupted while the
    server comes up: the half-started server is stopped, not left running detached."""
    import subprocess

    started = []

    class Recording(subprocess.Popen):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            started.append(self)

    def ctrl_c(*a, **kw):  # the first "is it answering?" is where the Ctrl+C lands
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", Recording)
    monkeypatch.setattr(daemon, "_answering", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        daemon.ensure_running(state_dir, op_delay_s=0.01)
    assert len(started) == 1
    assert started[0].wait(timeout=15) is not None  # before: it went on serving
    monkeypatch.undo()
    assert daemon.status(state_dir) is None and not (state_dir / "server.json").exists()


def test_a_copied_projects_record_names_not_the_original_cloud(tmp_path, local_project):
    """A project folder copied (with its .aitk/local) while its local cloud runs: the copy's
    server.json names the original's live server, and its cloud.json the original's replicas.
    Before: the copy's commands said "the local cloud is still running (pid <the original's>)",
    used the original's cloud as their own, and `aitk local stop` in the copy stopped it."""
    import shutil

    a = tmp_path / "a" / ".aitk" / "local"
    info = daemon.ensure_running(a, op_delay_s=0.01)
    try:
        factory = ClientFactory(info.endpoints, LocalCredential(a))
        out = deploy(factory, "rg1", local_project, modelPath="/mount")
        key = factory.storage(SUB).storage_accounts.list_keys("rg1", out["STORAGE_ACCOUNT_NAME"]).as_dict()["keys"][0]["value"]
        upload_stand_in(factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key))
        apps = factory.container_apps(SUB)
        app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
        apps.container_apps_revisions.restart_revision("rg1", app.name, app.latest_revision_name)
        replica = wait_for(lambda: _replica_pid(info, out["ACA_APP_ENDPOINT"]), what="the replica")

        b = tmp_path / "b" / ".aitk" / "local"
        shutil.copytree(a, b, ignore=shutil.ignore_patterns("files", "replica"))
        assert json.loads((b / "server.json").read_text())["pid"] == info.pid
        assert daemon.still_running(b) is None
        assert daemon.status(b) is None
        assert daemon.stop(b) is False
        assert pid_alive(info.pid) and pid_alive(replica)  # the original's cloud and replica run on
        assert daemon.still_running(a).startswith(f"the local cloud is still running (pid {info.pid}) with 1 model")
    finally:
        daemon.stop(a)
        daemon.stop(tmp_path / "b" / ".aitk" / "local")


def test_a_recycled_pid_is_not_named_as_the_local_cloud(state_dir):
    """server.json names a pid that now runs another process, even one whose command line
    looks like a local cloud of this folder: its start time is not the recorded one."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "aitk_tui.local", "serve",
                              "--state-dir", str(state_dir.resolve())])
    try:
        wait_for(lambda: b"serve" in Path(f"/proc/{other.pid}/cmdline").read_bytes(), what="its exec")
        state_dir.mkdir(parents=True)
        (state_dir / "server.json").write_text(json.dumps({
            "pid": other.pid, "url": "https://127.0.0.1:1", "ca_bundle": "/nonexistent",
            "state_dir": str(state_dir.resolve()), "pid_start": "1"}))  # the recorded server started at boot
        assert daemon.still_running(state_dir) is None  # before: "the local cloud is still running (pid ...)"
        assert daemon.stop(state_dir) is False and other.poll() is None  # and it was sent SIGTERM
    finally:
        other.kill()
        other.wait()


def test_the_still_running_note_names_the_live_cloud_and_how_to_stop_it(tmp_path, capsys):
    """The note a `--local` command prints as it exits, fast (a stand-in process with the
    server's command line, no server): the live cloud's pid and a stop command that works for
    a project path with a space; nothing once that process is gone (and none for `local`)."""
    import argparse
    import subprocess
    import sys

    from aitk_tui.cli import _still_running_notice
    from aitk_tui.local.processes import proc_start_time

    root = tmp_path / "my project"
    state = (root / ".aitk" / "local").resolve()
    state.mkdir(parents=True)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "aitk_tui.local",
                                 "serve", "--state-dir", str(state)])
    try:
        wait_for(lambda: b"serve" in Path(f"/proc/{stand_in.pid}/cmdline").read_bytes(), what="its exec")
        started = proc_start_time(stand_in.pid)
        (state / "server.json").write_text(json.dumps({"pid": stand_in.pid, "url": "https://127.0.0.1:1",
                                                       "ca_bundle": "/nonexistent", "state_dir": str(state),
                                                       "pid_start": started}))
        _still_running_notice(argparse.Namespace(local=True, command="deploy", project=root))
        assert capsys.readouterr().err == (f"aitk: note: the local cloud is still running (pid {stand_in.pid}); "
                                           f"stop it with: aitk local stop --project '{root}'\n")
        _still_running_notice(argparse.Namespace(local=True, command="local", project=root))
        assert capsys.readouterr().err == ""  # `aitk local ...` says what it did itself
    finally:
        stand_in.kill()
        stand_in.wait()
    _still_running_notice(argparse.Namespace(local=True, command="deploy", project=root))
    assert capsys.readouterr().err == ""


def test_a_server_started_by_hand_with_a_relative_state_dir_is_still_ours(tmp_path):
    """`python -m aitk_tui.local serve --state-dir .aitk/local` from the project: its command
    line names the folder relative to its own working folder."""
    import subprocess
    import sys

    from aitk_tui.local.processes import proc_start_time

    root = tmp_path / "p"
    state = (root / ".aitk" / "local").resolve()
    state.mkdir(parents=True)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "aitk_tui.local",
                                 "serve", "--state-dir", ".aitk/local"], cwd=root)
    try:
        wait_for(lambda: b"serve" in Path(f"/proc/{stand_in.pid}/cmdline").read_bytes(), what="its exec")
        started = proc_start_time(stand_in.pid)
        (state / "server.json").write_text(json.dumps({"pid": stand_in.pid, "url": "https://127.0.0.1:1",
                                                       "ca_bundle": "/nonexistent", "state_dir": str(state),
                                                       "pid_start": started}))
        assert daemon.still_running(state) == f"the local cloud is still running (pid {stand_in.pid})"
        assert daemon.still_running(tmp_path / "other" / ".aitk" / "local") is None
    finally:
        stand_in.kill()
        stand_in.wait()
