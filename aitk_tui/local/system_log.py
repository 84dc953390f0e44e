"""The local cloud's system log: what the platform did to an app's replica, as ACA's
``eventStreamEndpoint`` reports it (``az containerapp logs show --type system``).

One JSON object per line, in ACA's shape (``TimeStamp``, ``Type`` Normal/Warning,
``ContainerAppName``, ``RevisionName``, ``ReplicaName``, ``Msg``, ``Reason``,
``EventSource``, ``Count``), one file per app beside its console log. The replica
supervisor records what it really goes through (assigned, started, probe failed, ready,
exited and restarting); the scale-to-zero emulation records its scale events through
:meth:`~aitk_tui.local.replicas.ReplicaManager.record_system_event`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from .store import now_iso

EVENT_SOURCE = "ContainerAppController"
MAX_BYTES = 1 << 20  # one previous file (.1) is kept past this


class SystemLog:
    """Appends events to per-app files; thread-safe (supervisors, the ARM handlers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def append(self, path: Path, *, app: str, revision: str, replica: str, reason: str, msg: str,
               warning: bool = False) -> dict:
        event = {"TimeStamp": now_iso(), "Type": "Warning" if warning else "Normal", "ContainerAppName": app,
                 "RevisionName": revision, "ReplicaName": replica, "Msg": msg, "Reason": reason,
                 "EventSource": EVENT_SOURCE, "Count": 1}
        line = json.dumps(event, ensure_ascii=False) + "\n"
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size > MAX_BYTES:
                path.replace(path.with_name(path.name + ".1"))
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
        return event


def read_events(path: Path) -> list[dict]:
    """Every event in ``path`` (lines that do not parse are skipped): for tests and tools."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
