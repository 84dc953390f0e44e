"""Ctrl+C ends every command the same way: the real ``aitk`` in a subprocess, against the
real local-cloud daemon, gets SIGINT mid-run (sent to its process group, as a terminal
does) and exits 130 with one "interrupted" line, no traceback, and the project's files
as they were. A question that gets no answer (the input ends) is not a yes: exit 1.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aitk_tui.local import daemon
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB

REPO = Path(__file__).resolve().parents[2]
WATCHED = ("infra/inference.config.json", "infra/provision/inference.parameters.json")


class Run:
    """``aitk ARGS`` in a subprocess of its own process group; stdout/stderr read as they come."""

    def __init__(self, project: Path, env: dict[str, str], args: tuple[str, ...], tty: bool) -> None:
        self.master = None
        stdin: int = subprocess.DEVNULL
        if tty:  # a terminal to ask on: stdin.isatty() is true, as for a user
            self.master, slave = pty.openpty()
            stdin = slave
        # SIGINT as a terminal's foreground command has it, whatever this runner inherited: a
        # runner started in the background (`cmd &` in a script, nohup) ignores SIGINT, its
        # children inherit that, and Python then never raises KeyboardInterrupt.
        self.proc = subprocess.Popen([sys.executable, "-m", "aitk_tui", *args], cwd=project, env=env, stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if tty:
            os.close(slave)
        self.out, self.err = bytearray(), bytearray()
        for stream, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, buf), daemon=True).start()

    @staticmethod
    def _pump(stream, buf: bytearray) -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):
            buf.extend(chunk)

    def wait_for(self, seen: Callable[[str, str], bool], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not seen(self.out.decode(errors="replace"), self.err.decode(errors="replace")):
            assert self.proc.poll() is None, f"exited {self.proc.returncode} first:\n{self.out.decode()}\n{self.err.decode()}"
            assert time.monotonic() < deadline, f"timed out:\n{self.out.decode()}\n{self.err.decode()}"
            time.sleep(0.05)

    def interrupt(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)  # the whole foreground group, as the terminal's Ctrl+C

    def end(self, timeout: float = 30.0) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # the pumps read the last bytes
        if self.master is not None:
            os.close(self.master)
        return rc, self.out.decode(errors="replace"), self.err.decode(errors="replace")


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A project provisioned on the local cloud through the real daemon (as a user's shell)."""
    base = tmp_path_factory.mktemp("interrupts")
    project = base / "p"
    env = dict(os.environ, XDG_STATE_HOME=str(base / "xdg"), HF_HUB_OFFLINE="1", AITK_TORCH_THREADS="1")
    env.pop("AITK_API_KEY", None)
    env.pop("AITK_DEBUG", None)

    def aitk(*args: str) -> None:
        r = subprocess.run([sys.executable, "-m", "aitk_tui", *args], cwd=base, env=env, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (args, r.stdout, r.stderr)

    try:
        aitk("init", str(project))
        aitk("--project", str(project), "groups", "create", "rg-int", "--location", "eastus", "--local")
        aitk("--project", str(project), "provision", "--local", "--yes", "--subscription", SUB,
             "--resource-group", "rg-int")
        yield project, env
    finally:
        daemon.stop(project / ".aitk" / "local")


def _inject(project: Path, **fault) -> None:
    """A fault of the running local cloud (``aitk_tui.local.faults``), through its admin route."""
    import urllib.request

    from aitk_tui.endpoints import tls_verify
    from aitk_tui.local.credential import issue_token, load_key

    state = project / ".aitk" / "local"
    data = json.loads((state / "server.json").read_text())
    token, _ = issue_token(load_key(state), lifetime_s=60)
    req = urllib.request.Request(data["url"] + "/_local/faults", data=json.dumps(fault).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=tls_verify(data["ca_bundle"]), timeout=10) as r:
        assert r.status == 201


def _files(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in WATCHED}


def _interrupted(provisioned, args: tuple[str, ...], seen: Callable[[str, str], bool], *,
                 tty: bool = False) -> tuple[str, str]:
    """Run, wait until ``seen``, Ctrl+C: exit 130, one "interrupted" line, no traceback,
    the config and parameters files untouched."""
    project, env = provisioned
    before = _files(project)
    run = Run(project, env, args, tty)
    run.wait_for(seen)
    run.interrupt()
    rc, out, err = run.end()
    assert rc == 130, (args, rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    said = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(said) == 1 and said[0].startswith("aitk: interrupted"), err
    assert _files(project) == before
    assert not list((project / "infra").rglob(".*.tmp"))  # no half-written temp file either
    return out, err


def test_status_watch_ends_like_every_command(provisioned):
    # before: a watch ended with exit 0, every other command with 130
    _interrupted(provisioned, ("status", "--local", "--watch", "0.5"), lambda out, err: "Ctrl+C stops" in out)


@pytest.mark.parametrize("args", [("logs", "--local"), ("logs", "--local", "--system")], ids=["console", "system"])
def test_logs_follow(provisioned, args):
    _interrupted(provisioned, args, lambda out, err: out.count("\n") >= 1)


def test_provision_mid_deployment_says_it_goes_on_in_azure(provisioned):
    _, err = _interrupted(provisioned, ("provision", "--local", "--yes", "--resource-group", "rg-int"),
                          lambda out, err: "Submitted deployment" in err)
    assert "aitk: interrupted (a submitted deployment continues in Azure" in err
    project, env = provisioned  # as the line says: provisioning again follows it to its end
    r = subprocess.run([sys.executable, "-m", "aitk_tui", "provision", "--local", "--yes", "--resource-group",
                        "rg-int"], cwd=project, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr


def test_a_question_interrupted_sent_nothing_and_says_nothing_was_sent(provisioned):
    # before: "a deletion already sent continues in Azure", on the question's line
    for args in (("down", "--local"), ("down", "--all", "--local"), ("provision", "--local", "--resource-group",
                                                                      "rg-int")):
        _, err = _interrupted(provisioned, args, lambda out, err: err.rstrip().endswith(("[y/N]", "to confirm:")),
                              tty=True)
        assert err.endswith("\naitk: interrupted\n") or "\naitk: interrupted\naitk: note:" in err, err


def test_deploy_and_models_upload_which_resumes_with_what_did_not_finish(provisioned, tmp_path):
    """Before: after a Ctrl+C the upload recorded nothing (the file in flight ran on past the
    moment the command left, and all its tasks were cancelled at once), so it sent all again."""
    _interrupted(provisioned, ("deploy", "--local"), lambda out, err: "uploaded" in err or "Restarted" in err)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(48 << 20))
    # Its 12 ranges slowed down (1 s each, 4 at a time): the Ctrl+C lands with seconds of it to go.
    _inject(provisioned[0], kind="latency", count=12, path_contains="adapter_model", delay_s=1.0)
    base = tmp_path / "base"  # with its base: an adapter alone is refused when the share has none
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "x"}))
    args = ("models", "upload", "--adapter", str(adapter), "--model", str(base), "--local")
    _interrupted(provisioned, args, lambda out, err: "uploaded 1/2 files" in err.rpartition("Adapter ")[2])
    project, env = provisioned  # run again: what finished before the Ctrl+C is not sent again
    r = subprocess.run([sys.executable, "-m", "aitk_tui", *args], cwd=project, env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    base_part, _, adapter_part = r.stderr.partition("Adapter ")
    assert "uploaded 0 files (0 B), 1 unchanged" in base_part, r.stderr  # the base had finished
    assert "1 to upload" in adapter_part and "1 unchanged" in adapter_part, r.stderr  # and one adapter file


def test_chat_mid_answer(provisioned):
    project, env = provisioned
    r = subprocess.run([sys.executable, "-m", "aitk_tui", "deploy", "--local"], cwd=project, env=env,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr  # healthy: the chat streams at once
    out, _ = _interrupted(provisioned, ("chat", "a long answer please", "--local", "--max-tokens", "2000"),
                          lambda out, err: len(out) > 20)
    assert out.endswith("\n")  # before: the cut answer had no newline, and "aitk: interrupted" was glued to it


def test_ctrl_c_closes_the_tasks_a_command_started(caplog, capsys):
    """A Ctrl+C lands inside the command's task; a task it started (the chat's log follower,
    inside an async generator) is cancelled and closed too. Before: it was left pending, and
    closing its generator at shutdown printed "an error occurred during closing of
    asynchronous generator" with a traceback (`aitk chat` interrupted while waking)."""
    import asyncio

    from aitk_tui.cli._session import run_async

    closed = []

    async def follow():
        try:
            while True:
                yield
                await asyncio.sleep(0.01)
        finally:
            await asyncio.sleep(0)
            closed.append(True)

    async def follower():
        async for _ in follow():
            pass

    async def command():
        asyncio.ensure_future(follower())
        await asyncio.sleep(0.05)
        raise KeyboardInterrupt  # where the signal lands

    with pytest.raises(KeyboardInterrupt):
        run_async(command())
    assert closed == [True]
    assert not [r for r in caplog.records if r.name == "asyncio"] and capsys.readouterr().err == ""


def test_no_answer_is_not_a_yes(provisioned):
    """The input ends at the question (Ctrl+D): exit 1 and one clear sentence, as a refusal."""
    project, env = provisioned
    for args in (("down", "--all", "--local"), ("provision", "--local", "--resource-group", "rg-int")):
        run = Run(project, env, args, tty=True)
        run.wait_for(lambda out, err: err.rstrip().endswith(("[y/N]", "to confirm:")))
        os.write(run.master, b"\x04")  # Ctrl+D: end of input
        rc, out, err = run.end()
        assert rc == 1, (args, rc, err)
        assert "aitk: error: No answer: the input ended before the question was answered, so nothing was changed." \
            in err and "Traceback" not in err
    assert json.loads((project / "infra/inference.config.json").read_text())["ACA_APP_NAME"]  # still provisioned


def test_params_set_interrupted_while_writing_keeps_the_file_whole(local_project, capsys, monkeypatch):
    """`aitk params set` runs in a blink; a Ctrl+C can still land while it writes: the file
    stays as it was (no half file, no temp file left) and the command exits 130."""
    from aitk_tui.cli import main

    path = Path(local_project) / "infra/provision/inference.parameters.json"
    before = path.read_bytes()

    def ctrl_c(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", ctrl_c)
    rc = main(["--project", str(local_project), "params", "set", "maximumInstanceCount=3"])
    assert rc == 130 and capsys.readouterr().err == "aitk: interrupted\n"
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["inference.bicep", "inference.json",
                                                            "inference.parameters.json"]


def test_a_progress_line_is_written_whole_with_its_newline():
    """A Ctrl+C lands between two writes: print() writes the text and its newline apart, and
    one landing between them glued "aitk: interrupted" to "uploaded 1/27 files (…, 10%)"."""
    from aitk_tui.cli._printer import EventPrinter
    from aitk_tui.events import Info, UploadProgress

    class Writes:
        def __init__(self) -> None:
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    err = Writes()
    printer = EventPrinter(err=err, out=Writes())
    printer(Info("27 to upload"))
    printer(UploadProgress("a", 1, 27, 10, 100))
    assert err.writes == ["27 to upload\n", "  uploaded 1/27 files (10 B of 100 B, 10%)\n"]
