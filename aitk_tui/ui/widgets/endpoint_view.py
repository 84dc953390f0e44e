"""The Endpoint tab: the container app live, as k9s shows a deployment.

A summary (app, endpoint, health, why a replica fails, scale and cost estimate), the
revisions and replicas tables refreshed in place, and the replica's log below with a
toggle between its console output and the platform's system log (``s``) and the
health-probe lines hidden unless asked for (``p``). Everything is read by workers while the
tab is shown (every 5 s on Azure, 1.5 s on the local cloud) and stops when it is hidden or
the app closes; workers only post messages, the handlers below update the widgets.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from ...cloud.endpoint_status import EndpointStatus, age, health_words
from ...config.inference_config import APP_KEYS
from ...errors import AitkError
from ...events import Failed, LogLine
from .log_pane import LogPane

if TYPE_CHECKING:
    from ..state import UIState

AZURE_REFRESH_S = 5.0
LOCAL_REFRESH_S = 1.5
FLUSH_INTERVAL_S = 0.15
MAX_ROWS = 3  # per table: the log below keeps most of 24 rows


def short_revision(name: str) -> str:
    return name.rsplit("--", 1)[-1] if "--" in name else name


def short_replica(name: str) -> str:
    from ...cloud.logs import short_replica as short

    return short(name)


# The Endpoint view's health words as the header's (operations.health_from_status's vocabulary).
HEADER_HEALTH = {"ok": "healthy", "asleep": "asleep", "loading": "waking", "starting": "waking", "failed": "failed",
                 "unreachable": "unhealthy", "error": "unhealthy"}


def endpoint_target(session: Any, state: "UIState") -> tuple[Any, Any] | str:
    """What the Endpoint tab reads: (session, config), or one sentence saying why it cannot."""
    if session is None:
        return state.session_error and f"The cloud session could not start: {state.session_error}" or \
            "Connecting to the cloud…"
    if state.config_error:
        return f"inference.config.json cannot be used: {state.config_error}"
    if state.config_is_local_cloud:
        return "inference.config.json is the local cloud's: run `aitk --local` to see that app."
    missing = state.config_missing(*APP_KEYS)
    if missing:
        return f"Nothing provisioned yet (inference.config.json lacks {', '.join(missing)}): provision first (F5)."
    return session, state.config


@dataclass
class EndpointRead(Message):
    status: EndpointStatus


@dataclass
class EndpointUnreadable(Message):
    message: str
    detail: str | None = None


@dataclass
class EndpointLogLine(Message):
    kind: str
    event: Any  # LogLine or Failed


@dataclass
class EndpointLogEnded(Message):
    kind: str


class EndpointView(Vertical, can_focus=False):
    HELP = """
## Endpoint
The container app as it is now, read again every few seconds while this tab is shown.

- **Health**: healthy, starting (a replica is being started, or the model loads), asleep
  (scaled to zero: nothing is probed, so nothing is woken), failed (the revision could not
  activate, e.g. Azure's "Deployment Progress Deadline Exceeded": no request will wake it), or
  not answering. **Why** says in one sentence why a replica fails to start, in Azure's words
  and from the system log and the replica's own output.
- **Revisions** (active, traffic, replicas, state, age) and **replicas** (state, ready,
  restarts, age).
- The log below follows the replica: **s** switches between its console output and the
  system log (assignment, start, probe failures, restarts, scaling); **p** shows or hides
  the health-probe lines.
"""

    DEFAULT_CSS = """
    EndpointView { height: 1fr; }
    EndpointView #ep-summary { height: auto; max-height: 5; padding: 0 1; }
    EndpointView DataTable { height: auto; max-height: 4; margin: 0 1; }
    EndpointView #ep-log-title { height: 1; padding: 0 1; color: $text-muted; }
    EndpointView LogPane { margin: 0 1; border-top: solid $panel-lighten-2; }
    """

    class HealthSeen(Message):
        """What a read of the app said of its health, for the header (in the header's words)."""

        def __init__(self, health: str, keeps_warm: bool | None) -> None:
            super().__init__()
            self.health = health
            self.keeps_warm = keeps_warm

    def __init__(self, *, clock: Callable[[], datetime] | None = None,
                 target: tuple[Any, Any] | str = "Connecting to the cloud…", id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        # What to read: (session, config), or why nothing can be (given by the screen: endpoint_target).
        self.target = target
        self.status: EndpointStatus | None = None
        self.problem: str | None = None  # why nothing can be read (no session, not provisioned...)
        self.log_kind = "console"
        self.show_probes = False
        self.show_raw = False  # structured log lines as sent (r), not as time, level and message
        self.hidden_probes = 0
        self.active = False
        self.reads = 0  # status reads shown (tests wait on it)
        self._log_running = False
        self._log_retry_at = 0.0  # a stream that ended is opened again after this (monotonic)
        self._pending: list[str | tuple[str | None, str]] = []
        self._flush_timer: Any = None

    def compose(self) -> ComposeResult:
        yield Static("Reading the container app…", id="ep-summary", markup=False)
        revisions: DataTable = DataTable(id="ep-revisions", cursor_type="none", zebra_stripes=False)
        revisions.add_columns("Revision", "Active", "Traffic", "Replicas", "State", "Age")
        yield revisions
        replicas: DataTable = DataTable(id="ep-replicas", cursor_type="row", zebra_stripes=False)
        replicas.add_columns("Replica", "Revision", "State", "Ready", "Restarts", "Age")
        yield replicas
        yield Static(self._log_title(), id="ep-log-title", markup=False)
        yield LogPane(id="ep-log", clock=self._clock)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one("#ep-log", LogPane)

    # -- shown / hidden ----------------------------------------------------------------
    def set_active(self, active: bool) -> None:
        """Poll (and follow the log) only while the tab is shown."""
        if active == self.active:
            return
        self.active = active
        if active:
            self._poll()
        else:
            self.workers.cancel_group(self, "endpoint-status")
            self.workers.cancel_group(self, "endpoint-logs")
            self._log_running = False

    def refresh_now(self) -> None:
        if self.active:
            self._poll()

    def _interval(self, session: Any) -> float:
        endpoints = getattr(session, "endpoints", None)
        return LOCAL_REFRESH_S if getattr(endpoints, "is_local", False) else AZURE_REFRESH_S

    # -- workers: they read and post; the handlers below update the widgets ----------------
    @work(exclusive=True, group="endpoint-status", exit_on_error=False)
    async def _poll(self) -> None:
        while True:
            target = self.target
            if isinstance(target, str):
                self.post_message(EndpointUnreadable(target))
                await asyncio.sleep(1.0)  # the session or the config may arrive
                continue
            session, config = target
            try:
                status = await session.endpoint_status(config)
            except AitkError as e:
                self.post_message(EndpointUnreadable(e.message, e.detail))
            else:
                self.post_message(EndpointRead(status))
            await asyncio.sleep(self._interval(session))

    @work(exclusive=True, group="endpoint-logs", exit_on_error=False)
    async def _follow_logs(self, kind: str) -> None:
        target = self.target
        if isinstance(target, str):
            self.post_message(EndpointLogEnded(kind))
            return
        session, config = target
        try:
            async with aclosing(session.replica_logs(config, follow=True, tail_lines=30, kind=kind)) as events:
                async for event in events:
                    self.post_message(EndpointLogLine(kind, event))
        except AitkError as e:
            self.post_message(EndpointLogLine(kind, Failed(e.message, e.detail)))
        finally:
            self.post_message(EndpointLogEnded(kind))

    def _start_logs(self) -> None:
        self._log_running = True
        self._follow_logs(self.log_kind)

    # -- handlers ----------------------------------------------------------------------------
    def on_endpoint_read(self, message: EndpointRead) -> None:
        message.stop()
        if not self.active:
            return
        self.status, self.problem = message.status, None
        self.reads += 1
        self._render_status(message.status)
        st = message.status
        if st.provisioned:  # the header reads the same answer: one source, not a 20 s-old probe
            self.post_message(self.HealthSeen(HEADER_HEALTH.get(st.health, "unknown"),
                                              st.scale.keeps_warm if st.scale is not None else None))
        if not self._log_running and time.monotonic() >= self._log_retry_at and st.provisioned and \
                (self.log_kind == "system" or st.replicas):
            self._start_logs()

    def on_endpoint_unreadable(self, message: EndpointUnreadable) -> None:
        message.stop()
        if not self.active:
            return
        self.problem = message.message
        text = Text(message.message, style="bold")
        if message.detail:
            text.append(f"\n{message.detail}", style="dim")
        self.query_one("#ep-summary", Static).update(text)

    def on_endpoint_log_line(self, message: EndpointLogLine) -> None:
        message.stop()
        if message.kind != self.log_kind:
            return  # a line of the stream that was just switched away from
        ev = message.event
        if isinstance(ev, LogLine):
            if ev.probe and not self.show_probes:
                self.hidden_probes += 1
                if self.hidden_probes == 1:
                    self._pending.append("(GET /health probe lines are hidden: p shows them)")
                return
            mark = "! " if ev.warning else ""
            self._pending.append((ev.time, f"[{ev.source}] {mark}{ev.shown(raw=self.show_raw)}"))
        elif isinstance(ev, Failed):
            self._pending.append(f"{ev.message}" + (f" ({ev.detail})" if ev.detail else ""))
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL_S, self.flush)

    def on_endpoint_log_ended(self, message: EndpointLogEnded) -> None:
        message.stop()
        if message.kind == self.log_kind:
            # The next read opens it again once a replica runs; not at once, so a stream that
            # keeps failing (no replica yet, a refused token) writes one line per 10 s, not per read.
            self._log_running = False
            self._log_retry_at = time.monotonic() + 10.0

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        lines, self._pending = self._pending, []
        if lines:
            self.log_pane.write_lines(lines)

    # -- toggles (keys s and p on this tab) -----------------------------------------------------
    def toggle_log_kind(self) -> str:
        self.log_kind = "system" if self.log_kind == "console" else "console"
        self.hidden_probes = 0  # the new stream says again that its probe lines are hidden
        self.workers.cancel_group(self, "endpoint-logs")
        self.flush()
        self.log_pane.write_lines([f"── {self.log_kind} log ──"])
        self.query_one("#ep-log-title", Static).update(self._log_title())
        self._log_running, self._log_retry_at = False, 0.0
        if self.active and (self.log_kind == "system" or (self.status and self.status.replicas)):
            self._start_logs()
        return self.log_kind

    def toggle_probes(self) -> bool:
        self.show_probes = not self.show_probes
        self.query_one("#ep-log-title", Static).update(self._log_title())
        return self.show_probes

    def toggle_raw(self) -> bool:
        """Structured lines (the server's JSON, the platform's events) as sent, or as time, level
        and message; from the next line on."""
        self.show_raw = not self.show_raw
        self.query_one("#ep-log-title", Static).update(self._log_title())
        return self.show_raw

    def _log_title(self) -> str:
        other = "system" if self.log_kind == "console" else "console"
        probes = "shown" if self.show_probes else "hidden"
        return (f"Replica log: {self.log_kind}  (s: {other} log · p: probe lines, {probes} · "
                f"r: {'formatted' if self.show_raw else 'raw'} lines)")

    # -- rendering ----------------------------------------------------------------------------
    def _render_status(self, st: EndpointStatus) -> None:
        now = time.time()
        summary = Text(no_wrap=False, overflow="fold")
        if not st.provisioned:
            summary.append(f"{st.app}: not provisioned", style="bold")
            summary.append("\nThe container app does not exist (never provisioned, or taken down). "
                           "Provision (F5) creates it.")
        else:
            state = ", ".join(s for s in (st.provisioning_state, st.running_state) if s) or "-"
            summary.append(st.app, style="bold")
            summary.append(f"  {state}  {st.endpoint or '-'}")
            style = "green" if st.health == "ok" else "yellow" if st.health in ("asleep", "loading", "starting") else "red"
            summary.append("\nHealth: ")
            summary.append(health_words(st), style=style)
            if st.failure_reason:
                summary.append("\nWhy: ", style="bold red")
                summary.append(st.failure_reason, style="red")
            if st.scale is not None:
                s = st.scale
                summary.append(f"\nScale: min {s.min_replicas}, max {s.max_replicas}, {s.concurrency} req/replica")
                if st.cost is not None:
                    summary.append(f" · estimate {_money(st.cost.min_per_hour)}/h at min, "
                                   f"{_money(st.cost.max_per_hour)}/h at max")
        self.query_one("#ep-summary", Static).update(summary)
        self._fill(self.query_one("#ep-revisions", DataTable), [
            (short_revision(r.name), "yes" if r.active else "no", "-" if r.traffic is None else f"{r.traffic}%",
             "-" if r.replicas is None else str(r.replicas), r.running_state or "-", age(r.created, now))
            for r in st.revisions[:MAX_ROWS]])
        self._fill(self.query_one("#ep-replicas", DataTable), [
            (short_replica(p.name), short_revision(p.revision), p.running_state or "-", "yes" if p.ready else "no",
             str(p.restart_count), age(p.created, now))
            for p in st.replicas[:MAX_ROWS]])

    @staticmethod
    def _fill(table: DataTable, rows: list[tuple[str, ...]]) -> None:
        """Rows updated in place (the cursor stays) when the same keys come back."""
        keys = [row[0] for row in rows]
        # Cells are Text: DataTable reads a str cell as markup, and names come from Azure.
        if [str(k.value) for k in table.rows] != keys:
            table.clear()
            for row in rows:
                table.add_row(*map(Text, row), key=row[0])
        else:
            for row in rows:
                for column, value in zip(table.columns, row, strict=True):
                    # update_width: a column sized for "Running" cut "ScaledToZero" and "ActivationFailed"
                    table.update_cell(row[0], column, Text(value), update_width=True)
        table.styles.height = len(rows) + 1


def _money(value: float) -> str:
    from ...cloud.prices import money

    return money(value)
