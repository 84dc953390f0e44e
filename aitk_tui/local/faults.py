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
  matches ``resource`` fails there with the provider error ``code`` (default
  ``InternalServerError``) and ``message``, nested as ARM nests it: the operation's
  statusMessage and the deployment's error read ``DeploymentFailed`` >
  ``ResourceDeploymentFailure`` > the provider error. With ``at="preflight"`` the deployment
  is refused before it starts instead: 400 ``InvalidTemplateDeployment`` >
  ``ValidationForResourceFailed`` > the provider error (e.g. ``MaxRegionalQuotaExceeded``).
- ``unregistered_providers``: a switch, not counted: the subscription behaves as a fresh one
  whose resource providers (option ``namespaces``, default Microsoft.App,
  Microsoft.OperationalInsights and Microsoft.Storage) are not registered. Their routes, and
  deployments of templates that use them, answer 409 ``MissingSubscriptionRegistration``
  until ``POST .../providers/{namespace}/register``; ``clear`` turns it off.
- ``no_gpu_quota``: a switch: the Microsoft.App usages of every region show the serverless
  GPU quotas used up (limit 0), as a subscription that never asked for GPU quota sees them.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

HTTP_KINDS = ("throttle", "server_error", "drop_connection", "token_expired", "latency")
KINDS = (*HTTP_KINDS, "fail_resource", "unregistered_providers", "no_gpu_quota")
DEFAULT_UNREGISTERED = ("Microsoft.App", "Microsoft.OperationalInsights", "Microsoft.Storage")
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
        self._unregistered: dict[str, str] = {}  # namespace (lower) -> "NotRegistered" | "Registering"
        self.no_gpu_quota = False

    def inject(self, kind: str, count: int = 1, path_contains: str | None = None, **options: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        if int(count) < 1:
            raise ValueError("count must be at least 1")
        if kind == "fail_resource" and not options.get("resource"):
            raise ValueError("fail_resource needs resource=<resource name or type>")
        if kind == "fail_resource" and options.get("at", "run") not in ("run", "preflight"):
            raise ValueError("fail_resource's at= is 'run' or 'preflight'")
        if kind == "no_gpu_quota":
            self.no_gpu_quota = True
            return Fault(kind, 1, None, {})
        if kind == "unregistered_providers":
            names = options.get("namespaces") or DEFAULT_UNREGISTERED
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",") if n.strip()]
            with self._lock:
                for ns in names:
                    self._unregistered[str(ns).lower()] = "NotRegistered"
            return Fault(kind, 1, None, {"namespaces": list(names)})
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
            self._unregistered.clear()
            self.no_gpu_quota = False
            return n

    # -- provider registration (the unregistered_providers switch) ---------------------------
    def registration_state(self, namespace: str) -> str:
        """'Registered', 'NotRegistered' or 'Registering'; a registration completes on the
        first read after it was asked for (ARM takes a minute or so; pollers just poll)."""
        with self._lock:
            state = self._unregistered.get(namespace.lower())
            if state == "Registering":
                self._unregistered.pop(namespace.lower())
            return state or "Registered"

    def is_registered(self, namespace: str) -> bool:
        with self._lock:
            return self._unregistered.get(namespace.lower()) is None

    def register(self, namespace: str) -> None:
        with self._lock:
            if namespace.lower() in self._unregistered:
                self._unregistered[namespace.lower()] = "Registering"

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

    def take_resource(self, resource_name: str, resource_type: str, at: str = "run") -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.kind != "fail_resource" or f.options.get("at", "run") != at:
                    continue
                want = str(f.options["resource"]).lower()
                if want in (resource_name.lower(), resource_name.lower().split("/")[-1], resource_type.lower()):
                    self._consume(f)
                    return Fault(f.kind, 1, f.path_contains, dict(f.options), f.id)
        return None
