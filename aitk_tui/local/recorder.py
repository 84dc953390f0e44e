"""A record of the ARM exchanges the local cloud answers, for the recorded-traffic test.

Set ``AITK_LOCAL_RECORD`` to a file path before the local cloud starts (the daemon inherits
it) and every ARM request and its answer is appended there as one JSON line: method, raw
path, ``api-version``, the request body and the response body when they are JSON, and the
status. ``tests/test_journey.py`` records the headless journey this way and validates each
body against the JSON schema of its operation in Azure's published REST API specifications.
Only the local cloud's own (fake) keys and secrets can appear in it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

ENV = "AITK_LOCAL_RECORD"


def _json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "Recorder | None":
        value = os.environ.get(ENV, "").strip()
        return cls(Path(value)) if value else None

    def record(self, req: Any, resp: Any) -> None:
        body = None if req.body_pending else _json(req.source if isinstance(req.source, bytes) else None)
        line = {"method": req.method, "path": req.raw_path, "api_version": req.query.get("api-version"),
                "request": body, "status": resp.status,
                "response": None if resp.stream is not None else _json(resp.body)}
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
