"""Faults the local cloud injects on request, so tests and demos can show how aitk copes.

Kinds (each is consumed ``count`` times, optionally only by requests whose path contains
``path_contains`` (matched against the path and query as sent); admin routes under ``/_local/`` are never affected):

- ``throttle``: 429 with ``Retry-After`` (option ``retry_after``, default 1 s) on ARM; 503
  ``ServerBusy`` on the Files data plane, as Storage throttles (option ``status`` overrides).
- ``server_error``: a 5xx with an ARM/Storage error body (option ``status``, default 500).
- ``drop_connection``: the request is read, then the connection is closed with no answer.
- ``token_expired``: 401 with a CAE claims challenge (``WWW-Authenticate: Bearer
  error="insufficient_claims", claims="<base64>"``); the presented token is revoked, so the
  SDK must fetch a new one and retry (azure-core does this on its own).
- ``latency``: the answer is delayed by ``delay_s`` seconds (default 1).
- ``fail_resource``: the next deployment that reaches a resource whose name (or type)
  matches ``resource`` fails there, with ``message`` (and ``code``, default
  ``ResourceDeploymentFailure``) as the operation's statusMessage and the deployment's error.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

HTTP_KINDS = ("throttle", "server_error", "drop_connection", "token_expired", "latency")
KINDS = (*HTTP_KINDS, "fail_resource")
_ids = itertools.count(1)


@dataclass
class Fault:
    kind: str
    count: int = 1
    path_contains: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    id: int = field(default_factory=lambda: next(_ids))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)


class Faults:
    """The pending faults of one local cloud (thread-safe; in memory only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, kind: str, count: int = 1, path_contains: str | None = None, **options: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        if int(count) < 1:
            raise ValueError("count must be at least 1")
        if kind == "fail_resource" and not options.get("resource"):
            raise ValueError("fail_resource needs resource=<resource name or type>")
        fault = Fault(kind, int(count), path_contains, dict(options))
        with self._lock:
            self._faults.append(fault)
        return fault

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def clear(self) -> int:
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
            return n

    def _consume(self, fault: Fault) -> None:
        fault.count -= 1
        if fault.count <= 0:
            self._faults.remove(fault)

    def take_http(self, path: str, arm: bool = True) -> Fault | None:
        """The first HTTP fault that applies to ``path`` (the count is consumed).

        ``token_expired`` applies to ARM requests only (the Files data plane uses Shared Key).
        """
        if path.startswith("/_local/"):
            return None
        with self._lock:
            for f in self._faults:
                if f.kind == "token_expired" and not arm:
                    continue
                if f.kind in HTTP_KINDS and (not f.path_contains or f.path_contains.lower() in path.lower()):
                    self._consume(f)
                    return Fault(f.kind, 1, f.path_contains, dict(f.options), f.id)
        return None

    def take_resource(self, resource_name: str, resource_type: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.kind != "fail_resource":
                    continue
                want = str(f.options["resource"]).lower()
                if want in (resource_name.lower(), resource_name.lower().split("/")[-1], resource_type.lower()):
                    self._consume(f)
                    return Fault(f.kind, 1, f.path_contains, dict(f.options), f.id)
        return None
