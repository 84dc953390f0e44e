"""Plain result types of the cloud back-end (re-exported by :mod:`aitk_tui.cloud.session`),
including what each long operation ends with (``Done.result``).

They live apart from ``session.py`` so that ``auth``, ``accounts`` and ``deploy`` can build
them without importing the session (and its lazy SDK plumbing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.inference_config import InferenceConfig


@dataclass(frozen=True)
class Identity:
    """Who is signed in, read from the access token's claims (never the token itself)."""

    display_name: str
    tenant_id: str | None
    method: str  # auto | cli | env | managed-identity | device-code | local


@dataclass(frozen=True)
class Subscription:
    id: str
    name: str
    state: str


@dataclass(frozen=True)
class ResourceGroupInfo:
    name: str
    location: str


@dataclass(frozen=True)
class AppStatus:
    name: str
    endpoint: str | None  # https://host (endpoint_url form), None when the app has no ingress
    provisioning_state: str
    running_state: str | None
    latest_revision: str | None
    replicas: int | None
    healthy: bool | None  # /health answered 200; None when it could not be asked
    revision_state: str | None = None  # the latest revision's runningState, as Azure says it (ActivationFailed...)
    revision_detail: str | None = None  # one sentence when that revision failed or is degraded
    revision_failed: bool = False  # it cannot start (ActivationFailed / Failed): not asleep, and waiting won't help


# -- what the long operations end with (``Done.result``) -----------------------------------
@dataclass(frozen=True)
class SignedIn:
    identity: Identity


@dataclass(frozen=True)
class Change:
    """One resource of a what-if: ARM's change type (Create, Modify, NoChange, Delete...)."""

    change_type: str
    resource_type: str  # e.g. "Microsoft.App/containerApps"
    name: str


@dataclass(frozen=True)
class WhatIf:
    changes: tuple[Change, ...]
    estimated: bool = False  # the cloud has no what-if API: compared with the group's resources


@dataclass(frozen=True)
class Provisioned:
    config: "InferenceConfig"  # as written to infra/inference.config.json
    elapsed_s: float


@dataclass(frozen=True)
class Deployed:
    uploaded: int
    bytes: int
    unchanged: int
    removed: int
    skipped: tuple[str, ...]  # share-relative paths not uploaded (.aitkignore, links, ...)
    endpoint: str | None
    revision: str | None = None  # the revision restarted, if any
    restarted: bool = False
    healthy: bool | None = None  # True once /health answered; None: not waited for


def pick(obj: object, *path: str, default: object = None) -> object:
    """Follow ``path`` through SDK models or plain dicts (camelCase or snake_case keys).

    The SDK's models are both objects and mappings, and raw JSON shows up in places
    (status messages, outputs); this reads either without caring which.
    """
    cur = obj
    for name in path:
        if cur is None:
            return default
        nxt = getattr(cur, name, None) if not isinstance(cur, dict) else None
        if callable(nxt):  # models are also mappings: .keys/.values/.items are methods there
            nxt = None
        if nxt is None and hasattr(cur, "get"):
            try:
                nxt = cur.get(name)
                if nxt is None:
                    camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
                    nxt = cur.get(camel)
            except Exception:  # noqa: BLE001 - a mapping that refuses a key is just "absent"
                nxt = None
        cur = nxt
    return default if cur is None else cur


def enum_text(value: object) -> str | None:
    """An SDK enum or a string as plain text."""
    if value is None:
        return None
    return str(getattr(value, "value", value))
