"""Replica processes as process groups: start times, liveness, and killing a whole group.

Kept apart from the supervisor (replicas.py) because the daemon and a starting server use
it too, to clean up after a server that died without stopping its replicas.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .store import Store


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against killing a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _group_running(pgid: int) -> bool:
    """Whether any process of the group is alive (zombies waiting for a reaper do not count)."""
    if not os.path.isdir("/proc"):  # macOS: no /proc; a signal 0 tells whether the group exists
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(pid: int, start_time: str | None = None, timeout_s: float = 5.0) -> bool:
    """TERM then KILL the process group led by ``pid``; True once none of it runs.

    With ``start_time``, a live process with that pid but another start time is a recycled
    pid and is left alone.
    """
    current = proc_start_time(pid)
    if start_time is not None and current is not None and current != start_time:
        return False
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _group_running(pid):
                return True
            time.sleep(0.05)
    return not _group_running(pid)


def runs_in(pid: int, folder: Path) -> bool:
    """Whether ``pid``'s working folder lies in ``folder`` (a replica runs in its share's
    folder under the state folder). True when that cannot be read (no /proc, another user)."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return True
    return cwd.is_relative_to(Path(folder).resolve())


def kill_recorded(store: Store) -> int:
    """Kill replica processes a previous server recorded; returns how many were found.

    Only those running in this state folder: a copied project's record names the replicas
    of the folder it was copied from, which are not ours to stop."""
    n = 0
    for app_id, app in store.apps().items():
        pid = app.get("pid")
        if pid and runs_in(pid, store.state_dir) and kill_group(pid, app.get("pid_start"), timeout_s=3.0):
            n += 1
        if pid:
            store.update_app(app["id"], pid=None, pid_start=None)
    return n
