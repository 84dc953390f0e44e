"""One detached local-cloud server per state folder, shared by every aitk process.

``ensure_running`` starts ``python -m aitk_tui.local serve --state-dir DIR`` in its own
session (it outlives the CLI command that started it) unless one is already answering;
the server writes ``DIR/server.json`` (pid, url, ca_bundle) atomically once it serves.
``stop`` ends the server (TERM, then KILL) and every replica process it recorded, so
nothing is left behind. Output goes to ``DIR/server.log``.

Each serving server also registers itself in a per-user registry (one small JSON file per
state folder under the XDG state dir, ``~/.local/state/aitk/local-clouds/``), so that
``stop_all`` (``aitk local stop --all``) finds every local cloud of this user, whichever
project started it. (Not the process table: that would also stop the clouds of test runs
that use their own ``XDG_STATE_HOME``.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..endpoints import CloudEndpoints, tls_verify
from ..errors import AitkError

SERVER_JSON = "server.json"
SERVER_LOG = "server.log"


@dataclass(frozen=True)
class LocalCloudInfo:
    url: str
    ca_bundle: str
    pid: int
    endpoints: CloudEndpoints
    state_dir: Path
    model_path: str | None = None
    adapter_path: str | None = None


def _read(state_dir: Path) -> dict | None:
    try:
        data = json.loads((state_dir / SERVER_JSON).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and "pid" in data and "url" in data else None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that exited
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True  # macOS: signal 0 said it exists
    try:  # a zombie (exited, not yet reaped) does not count
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _is_local_cloud(pid: int, state_dir: Path | None = None) -> bool:
    """Whether ``pid`` runs ``python -m aitk_tui.local`` (never signal a recycled pid), and,
    given ``state_dir``, serves that state folder (``--state-dir DIR``), not another one."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        try:
            line = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                                  timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return "aitk_tui.local" in line and (state_dir is None or str(state_dir) in line)
    if "aitk_tui.local" not in args:
        return False
    if state_dir is None:
        return True
    given = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--state-dir"), None)
    if given is None:
        return False
    try:  # a server started by hand with a relative --state-dir: relative to its own folder
        return (Path(os.readlink(f"/proc/{pid}/cwd")) / given).resolve() == state_dir
    except OSError:
        return Path(given) == state_dir


def _is_ours(state_dir: Path, data: dict) -> bool:
    """Whether the server ``state_dir``'s record names is this folder's own, alive: not a dead
    one, not a recycled pid (another start time than recorded), not the server of the folder
    the record was copied from (a copied project, or a folder from another machine)."""
    from .processes import proc_start_time

    pid = int(data["pid"])
    if not _alive(pid):
        return False
    recorded = data.get("state_dir")
    if isinstance(recorded, str) and Path(recorded) != state_dir:
        return False
    started = data.get("pid_start")
    if started is not None and proc_start_time(pid) not in (None, started):
        return False
    return _is_local_cloud(pid, state_dir)


def _answering(data: dict, state_dir: Path, timeout_s: float = 2.0) -> bool:
    from .credential import issue_token, load_key

    try:
        ctx = tls_verify(str(data["ca_bundle"]))
        # /_local/info answers only holders of the state folder's key (it names pid and paths).
        token, _ = issue_token(load_key(state_dir), lifetime_s=60)
        req = urllib.request.Request(data["url"] + "/_local/info", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as r:
            return json.loads(r.read()).get("pid") == data["pid"]
    except (OSError, ValueError, KeyError):
        return False


def _info(state_dir: Path, data: dict) -> LocalCloudInfo:
    from .server import make_endpoints

    return LocalCloudInfo(url=data["url"], ca_bundle=data["ca_bundle"], pid=int(data["pid"]),
                          endpoints=make_endpoints(data["url"], data["ca_bundle"]), state_dir=state_dir,
                          model_path=data.get("model_path") or None, adapter_path=data.get("adapter_path") or None)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "daemon.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_server_record(state_dir: Path, pid: int) -> None:
    data = _read(state_dir)
    if data and data.get("pid") == pid:
        (state_dir / SERVER_JSON).unlink(missing_ok=True)


def status(state_dir: Path | str) -> LocalCloudInfo | None:
    """The running server of ``state_dir`` if it answers; a stale server.json is removed."""
    state_dir = Path(state_dir).resolve()
    data = _read(state_dir)
    if data is None:
        return None
    if not _is_ours(state_dir, data):
        remove_server_record(state_dir, data["pid"])  # dead, or another folder's: stale here
        return None
    return _info(state_dir, data) if _answering(data, state_dir) else None


def _log_tail(state_dir: Path, lines: int = 15) -> str:
    try:
        return "\n".join((state_dir / SERVER_LOG).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _same(given: Path | str | None, running: str | None) -> bool:
    return given is None or str(Path(given).resolve()) == (running or "")


def ensure_running(state_dir: Path | str, *, model_path: Path | str | None = None,
                   adapter_path: Path | str | None = None, timeout_s: float = 10.0,
                   op_delay_s: float | None = None) -> LocalCloudInfo:
    """The state folder's server, started (detached) if none answers. Raises AitkError.

    A running server that serves another ``model_path``/``adapter_path`` than the ones
    given is restarted. ``op_delay_s`` (seconds between a deployed resource's states;
    default 0.3, or ``AITK_LOCAL_OP_DELAY``) applies when a server is started.
    """
    state_dir = Path(state_dir).resolve()
    with _locked(state_dir):
        info = status(state_dir)
        if info and _same(model_path, info.model_path) and _same(adapter_path, info.adapter_path):
            return info
        if info is not None:  # serving another model: restart with the one asked for
            _stop_locked(state_dir)
        data = _read(state_dir)
        if data and _is_ours(state_dir, data):
            _stop_locked(state_dir)  # alive but not answering: a hung server of ours
        (state_dir / SERVER_JSON).unlink(missing_ok=True)
        return _spawn(state_dir, model_path, adapter_path, timeout_s, op_delay_s)


def _spawn(state_dir: Path, model_path, adapter_path, timeout_s: float, op_delay_s: float | None) -> LocalCloudInfo:
    cmd = [sys.executable, "-m", "aitk_tui.local", "serve", "--state-dir", str(state_dir)]
    if op_delay_s is not None:
        cmd += ["--op-delay", str(op_delay_s)]
    if model_path:
        cmd += ["--model", str(Path(model_path).resolve())]
    if adapter_path:
        cmd += ["--adapter", str(Path(adapter_path).resolve())]
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[2])  # so `-m aitk_tui.local` imports from any cwd
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    with open(state_dir / SERVER_LOG, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                cwd=state_dir, start_new_session=True, close_fds=True)
    from .processes import kill_group

    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AitkError("The local cloud did not start.", f"exit code {proc.returncode}; server log:\n"
                                f"{_log_tail(state_dir)}")
            data = _read(state_dir)
            if data and data.get("pid") == proc.pid and _answering(data, state_dir, timeout_s=1.0):
                return _info(state_dir, data)
            time.sleep(0.05)
    except KeyboardInterrupt:  # Ctrl+C while it starts: no half-started server is left behind
        kill_group(proc.pid, timeout_s=2.0)
        remove_server_record(state_dir, proc.pid)
        raise
    kill_group(proc.pid, timeout_s=2.0)
    raise AitkError(f"The local cloud did not answer within {timeout_s:.0f} s.", f"server log:\n{_log_tail(state_dir)}")


def _stop_locked(state_dir: Path, timeout_s: float = 10.0) -> bool:
    stopped = False
    data = _read(state_dir)
    if data and _is_ours(state_dir, data):
        pid = int(data["pid"])
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 3.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if not _alive(pid):
                break
        stopped = True
    if (state_dir / "cloud.json").is_file():  # replicas of a server that died without cleaning up
        from .processes import kill_recorded
        from .store import Store

        kill_recorded(Store(state_dir))
    (state_dir / SERVER_JSON).unlink(missing_ok=True)
    return stopped


def stop(state_dir: Path | str, timeout_s: float = 10.0) -> bool:
    """Stop the server and its replicas; True if a server was running."""
    state_dir = Path(state_dir).resolve()
    if not state_dir.is_dir():
        return False
    with _locked(state_dir):
        return _stop_locked(state_dir, timeout_s)


# -- every local cloud of this user ---------------------------------------------------------
def registry_dir() -> Path:
    """Where running servers register (``$XDG_STATE_HOME/aitk/local-clouds``)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("aitk")) / "local-clouds"


def _entry(state_dir: Path) -> Path:
    return registry_dir() / (hashlib.sha256(str(state_dir).encode()).hexdigest()[:20] + ".json")


def register(state_dir: Path, pid: int, url: str) -> None:
    """Called by the server once it serves; best effort (a read-only home still serves)."""
    from ..fsutil import atomic_write_json

    with contextlib.suppress(OSError):
        atomic_write_json(_entry(Path(state_dir).resolve()), {"state_dir": str(Path(state_dir).resolve()),
                                                               "pid": pid, "url": url})


def unregister(state_dir: Path, pid: int) -> None:
    entry = _entry(Path(state_dir).resolve())
    try:
        if json.loads(entry.read_text(encoding="utf-8")).get("pid") == pid:
            entry.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def known_state_dirs() -> list[Path]:
    """Every state folder with a registered (possibly dead) or running local cloud."""
    dirs: set[Path] = set()
    with contextlib.suppress(OSError):
        for entry in registry_dir().glob("*.json"):
            try:
                dirs.add(Path(json.loads(entry.read_text(encoding="utf-8"))["state_dir"]))
            except (OSError, ValueError, KeyError, TypeError):
                entry.unlink(missing_ok=True)  # unreadable: nothing to find through it
    return sorted(dirs)


def stop_all(timeout_s: float = 10.0) -> list[Path]:
    """Stop every local cloud of this user, and the replicas of servers that died; returns
    the state folders whose server was running."""
    stopped = []
    for state_dir in known_state_dirs():
        data = _read(state_dir)
        if stop(state_dir, timeout_s):
            stopped.append(state_dir)
        entry = _entry(state_dir.resolve())
        if data is None or not _alive(int(data["pid"])):
            entry.unlink(missing_ok=True)
    return stopped


def still_running(state_dir: Path | str) -> str | None:
    """One line saying what of this state folder's local cloud still runs, or None.

    Reads files and ``/proc`` only (no request): it is printed as a command exits.
    """
    state_dir = Path(state_dir).resolve()
    data = _read(state_dir)
    if data is None or not _is_ours(state_dir, data):
        return None
    text = f"the local cloud is still running (pid {data['pid']})"
    replicas = _live_replicas(state_dir)
    if replicas:
        mb = sum(_rss_mb(pid) for pid in replicas)
        size = f", {mb:.0f} MB" if mb else ""
        pids = ", ".join(str(p) for p in replicas)
        text += (f" with {len(replicas)} model replica{'' if len(replicas) == 1 else 's'} "
                 f"(pid {pids}{size})")
    return text


def _live_replicas(state_dir: Path) -> list[int]:
    if not (state_dir / "cloud.json").is_file():
        return []
    from .processes import proc_start_time
    from .store import Store

    pids = []
    for app in Store(state_dir).apps().values():
        pid = app.get("pid")
        if pid and _alive(int(pid)) and (app.get("pid_start") in (None, proc_start_time(int(pid)))):
            pids.append(int(pid))
    return pids


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0
