"""Typed progress events yielded by every long back-end operation.

Both front-ends render these: the CLI prints them, the TUI turns them into widget
updates. Events are plain frozen dataclasses (no Textual, no SDK types) and their text
has already been passed through :func:`aitk_tui.errors.redact`.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Literal


@dataclass(frozen=True)
class Event:
    """Base class; ``at`` is a monotonic-ish wall time (seconds since epoch)."""


@dataclass(frozen=True)
class Info(Event):
    """A line for the log pane: something happened that the user should see."""

    message: str
    level: Literal["info", "warning"] = "info"


@dataclass(frozen=True)
class ResourceProgress(Event):
    """One resource of an ARM deployment changed state (from deployment operations)."""

    resource_type: str  # e.g. "Microsoft.App/containerApps"
    resource_name: str
    state: str  # Accepted / Running / Succeeded / Failed / ...
    elapsed_s: float
    message: str | None = None  # statusMessage, for failures


@dataclass(frozen=True)
class UploadProgress(Event):
    """Share sync progress: counts so far out of the files that need uploading."""

    path: str  # the file just finished (share-relative, forward slashes)
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    partial: bool = False  # bytes moved inside ``path``, still uploading (large files): not a finished file


@dataclass(frozen=True)
class HealthWait(Event):
    """Waiting for the endpoint: last probe result and time spent so far."""

    status: str  # "ok", "loading", "unreachable", "HTTP 502" ...
    elapsed_s: float
    detail: str | None = None


@dataclass(frozen=True)
class LogLine(Event):
    """A line of replica (container) output."""

    text: str
    source: str = "replica"
    probe: bool = False  # an access line of a /health probe: hidden unless asked for
    kind: Literal["console", "system"] = "console"  # the container's output, or the platform's system log
    warning: bool = False  # a system-log event of type Warning (probe failed, container terminated...)
    # From a structured line (the server's JSON log, the platform's events): when it happened
    # (HH:MM:SS, this machine's time zone), its level, and the line as the stream sent it.
    time: str | None = None
    level: str | None = None
    raw: str | None = None

    def shown(self, *, raw: bool = False) -> str:
        """The line as both faces show it: level and message, or the line as sent (``raw``)."""
        if raw and self.raw is not None:
            return self.raw
        return f"{self.level:<5} {self.text}" if self.level else self.text


@dataclass(frozen=True)
class Waking(Event):
    """A chat waits for a sleeping endpoint (:func:`aitk_tui.chat.wake.wake`). ``state``:
    asleep | loading | unreachable (ChatClient's words); ``detail`` is what the last probe
    said; ``log_line`` the replica's latest line."""

    elapsed_s: float
    state: str
    detail: str
    log_line: str | None = None


@dataclass(frozen=True)
class Awake(Event):
    """``/health`` answered ok after ``elapsed_s`` of waking; the request can go now."""

    elapsed_s: float


@dataclass(frozen=True)
class Done(Event):
    """The operation finished; ``summary`` is the one line to show, ``result`` the typed
    result (``SignedIn``, ``WhatIf``, ``Provisioned``, ``Deployed``, ``Scaled``, ``TornDown``...),
    read by attribute, never a dict read by string keys. Keyword-only, so that a caller still
    passing the old ``Done(summary, {...})`` fails loudly instead of handing on a dict."""

    summary: str
    _: KW_ONLY
    result: object | None = None


@dataclass(frozen=True)
class Failed(Event):
    """The operation failed: one clear sentence plus the (redacted) detail."""

    message: str
    detail: str | None = None
    config_error: bool = False  # a usage/configuration problem (not signed in...): the CLI exits 2
