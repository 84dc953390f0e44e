"""Messages workers post to the app: small dataclasses named for what happened.

Workers compute and post these; ``@on`` handlers in the app and widgets mutate the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from textual.message import Message

from ..events import Event

if TYPE_CHECKING:
    from ..backend import Backend


@dataclass
class SessionOpened(Message):
    session: Backend


@dataclass
class SessionFailed(Message):
    message: str
    detail: str | None = None


@dataclass
class IdentityKnown(Message):
    identity: Any  # None when not signed in
    reason: str | None = None


@dataclass
class HealthChecked(Message):
    health: str  # "healthy", "asleep", "unhealthy", "unreachable", "unknown"
    detail: str | None = None
    gpu_billing: bool | None = None  # min replicas >= 1; None: not known from this check


@dataclass
class OperationStarted(Message):
    op: str
    title: str


@dataclass
class OperationProgressed(Message):
    op: str
    event: Event


@dataclass
class OperationEnded(Message):
    op: str
    title: str
    outcome: Literal["done", "failed", "cancelled"]
    event: Event | None = None  # the Done or Failed that ended it


@dataclass
class ApiKeyFetched(Message):
    endpoint: str
    api_key: str | None
    reason: str | None = None
