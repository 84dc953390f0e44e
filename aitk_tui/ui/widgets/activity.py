"""The Activity tab: live progress of provisioning, deploy and replica logs.

A row per resource (state, elapsed time), an upload progress bar, a timestamped log
that follows only at the bottom, and a failure shown as one sentence whose detail
expands. Events are fed one at a time and rendered in batches (at most ~8 updates a
second), so a chatty operation never floods the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.containers import Horizontal, Vertical
from textual.widgets import Collapsible, DataTable, Label, ProgressBar, Static

from ...events import (
    Done,
    Event,
    Failed,
    HealthWait,
    Info,
    LogLine,
    ResourceProgress,
    UploadProgress,
)
from ..commands import bindings_for
from .log_pane import LogPane

if TYPE_CHECKING:
    from ...cloud.models import Change

FLUSH_INTERVAL_S = 0.12
MAX_TABLE_HEIGHT = 9  # header + 8 rows; more rows scroll


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(round(seconds)))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} m {seconds % 60:02d} s"


def format_bytes(n: int) -> str:
    from ...cloud.sync_plan import format_size  # one unit style for the CLI and the TUI

    return format_size(n)


def short_type(resource_type: str) -> str:
    """``Microsoft.App/managedEnvironments/storages`` -> ``managedEnvironments/storages``."""
    parts = resource_type.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else parts[-1]


def short_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]


_STATE_MARK = {"succeeded": "✓", "failed": "✕", "running": "…", "accepted": "…", "create": "+",
               "modify": "~", "delete": "-", "nochange": "=", "ignore": "·", "deploy": "+"}


class ActivityPane(Vertical, can_focus=False):
    BINDINGS = bindings_for("activity")
    HELP = """
## Activity
Provisioning, deploy and replica logs stream here.

- The table has one row per Azure resource with its state and elapsed time.
- The log follows new lines while you are at the bottom; scroll up to read and it
  stops following (a badge counts new lines); **End** follows again.
- A failure is one sentence; expand it (Enter on the title) for the detail.
- **Esc** cancels the running operation; nothing half-written is left behind.
"""

    DEFAULT_CSS = """
    ActivityPane { height: 1fr; }
    ActivityPane #op-title { height: auto; max-height: 3; padding: 0 1; text-style: bold; }
    ActivityPane #op-title.-failed { color: $error; }
    ActivityPane #op-title.-done { color: $success; }
    ActivityPane #error { display: none; margin: 0 1; }
    ActivityPane.-failed #error { display: block; }
    ActivityPane #error-detail { color: $text-muted; }
    ActivityPane #resources { display: none; height: 1; margin: 0 1; }
    ActivityPane.-has-resources #resources { display: block; }
    ActivityPane #upload { display: none; height: 1; margin: 0 1; }
    ActivityPane.-uploading #upload { display: block; }
    ActivityPane #upload-label { width: 48; margin-right: 1; }
    ActivityPane LogPane { margin: 0 1; border-top: solid $panel-lighten-2; }
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._pending: list[Event] = []
        self._flush_timer = None
        self._row_keys: set[str] = set()
        self.op: str | None = None
        self.title_text = "No operation yet. Provision (F5), Deploy (F6) or Show replica logs from the palette."
        self.last_error: Failed | None = None
        self.flushes = 0  # counted for tests and the benchmark: UI updates, not events
        self.show_probes = False  # replica access lines of /health probes (most of what it prints)
        self.hidden_probes = 0
        self._health: tuple[str, float] | None = None  # last health line written: (status, elapsed)

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, id="op-title", markup=False)
        with Collapsible(title="", id="error", collapsed=True):
            yield Static("", id="error-detail", markup=False)
        table: DataTable = DataTable(id="resources", cursor_type="row", zebra_stripes=False)
        table.add_columns("State", "Time", "Resource", "Type")
        yield table
        with Horizontal(id="upload"):
            yield Label("", id="upload-label", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="upload-bar")
        yield LogPane(id="log", clock=self._clock)

    # -- what the app calls --------------------------------------------------------
    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    @property
    def table(self) -> DataTable:
        return self.query_one("#resources", DataTable)

    def begin(self, op: str, title: str) -> None:
        self.flush()
        self.op = op
        self.last_error = None
        self.remove_class("-failed", "-uploading")
        if op in ("provision", "what_if"):
            self.table.clear()
            self._row_keys.clear()
            self.remove_class("-has-resources")
        self._health = None
        self._set_title(f"{title}…  (Esc cancels)", None)
        self.log_pane.write_lines([f"── {title} ──"])

    def feed(self, event: Event) -> None:
        self._pending.append(event)
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL_S, self.flush)

    def end(self, title: str, outcome: str, event: Event | None) -> None:
        self.flush()
        if outcome == "done":
            summary = event.summary if isinstance(event, Done) else "finished"
            self._set_title(f"✓ {title}: {summary}", "-done")
        elif outcome == "failed":
            message = event.message if isinstance(event, Failed) else "failed"
            self._set_title(f"✕ {title} failed", "-failed")
            self._show_error(event if isinstance(event, Failed) else Failed(message))
        else:
            self._set_title(f"■ {title} cancelled", None)
            self.log_pane.write_lines(["Cancelled; nothing was written locally."])
        self.op = None

    def show_changes(self, changes: Sequence[Change]) -> None:
        """What-if result: one row per resource that would change."""
        for change in changes:
            self._upsert(change.resource_type, change.name, change.change_type, None)

    def toggle_probes(self) -> bool:
        self.flush()
        self.show_probes = not self.show_probes
        self.log_pane.write_lines([f"(GET /health probe lines {'shown' if self.show_probes else 'hidden'} from here on;"
                                   f" {self.hidden_probes} hidden so far)"])
        return self.show_probes

    def save_text(self) -> str:
        lines = [f"# aitk activity log — {self.title_text}"]
        for row_key in self.table.rows:
            lines.append("# " + "  ".join(str(c) for c in self.table.get_row(row_key)))
        return "\n".join(lines) + "\n" + self.log_pane.text()

    # -- batching ------------------------------------------------------------------
    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        if not self._pending:
            return
        events, self._pending = self._pending, []
        self.flushes += 1
        lines: list[str | tuple[str | None, str]] = []
        upload: UploadProgress | None = None
        for ev in events:
            if isinstance(ev, ResourceProgress):
                self._upsert(ev.resource_type, ev.resource_name, ev.state, ev.elapsed_s)
                if ev.state.lower() in ("succeeded", "failed") or ev.message:
                    extra = f": {ev.message}" if ev.message else ""
                    lines.append(f"{short_name(ev.resource_name)} ({short_type(ev.resource_type)}) {ev.state}"
                                 f" after {format_elapsed(ev.elapsed_s)}{extra}")
            elif isinstance(ev, UploadProgress):
                upload = ev
                if not ev.partial:
                    lines.append(f"uploaded {ev.path} ({ev.files_done}/{ev.files_total})")
            elif isinstance(ev, HealthWait):
                # A probe every ~0.5 s: a line when the answer changes or every 10 s, as the CLI does.
                last = self._health
                if last is None or last[0] != ev.status or ev.elapsed_s - last[1] >= 10:
                    self._health = (ev.status, ev.elapsed_s)
                    detail = f" — {ev.detail}" if ev.detail else ""
                    lines.append(f"endpoint: {ev.status} after {format_elapsed(ev.elapsed_s)}{detail}")
            elif isinstance(ev, LogLine):
                if ev.probe and not self.show_probes:
                    self.hidden_probes += 1
                    if self.hidden_probes == 1:
                        lines.append("(GET /health probe lines are hidden: P shows them)")
                    continue
                lines.append((ev.time, f"[{ev.source}] {ev.shown()}"))
            elif isinstance(ev, Info):
                lines.append(("warning: " if ev.level == "warning" else "") + ev.message)
            elif isinstance(ev, Done):
                lines.append(f"done: {ev.summary}")
            elif isinstance(ev, Failed):
                lines.append(f"error: {ev.message}")
                if ev.detail:
                    lines.append(f"  detail: {ev.detail}")
        if upload is not None:
            self._show_upload(upload)
        self.log_pane.write_lines(lines)

    # -- widgets -------------------------------------------------------------------
    def _set_title(self, text: str, cls: str | None) -> None:
        self.title_text = text
        title = self.query_one("#op-title", Static)
        title.remove_class("-done", "-failed")
        if cls:
            title.add_class(cls)
        title.update(text)

    def _show_error(self, failed: Failed) -> None:
        self.last_error = failed
        collapsible = self.query_one("#error", Collapsible)
        # Content, not str: a Collapsible reads a str title as markup, and the message quotes names.
        collapsible.title = Content(f"{failed.message}  (expand for detail)" if failed.detail else failed.message)
        self.query_one("#error-detail", Static).update(failed.detail or "No further detail.")
        collapsible.collapsed = True
        self.add_class("-failed")

    def _show_upload(self, ev: UploadProgress) -> None:
        self.add_class("-uploading")
        bar = self.query_one("#upload-bar", ProgressBar)
        bar.update(total=max(ev.bytes_total, 1), progress=ev.bytes_done)
        self.query_one("#upload-label", Label).update(
            f"Upload {ev.files_done}/{ev.files_total} files, "
            f"{format_bytes(ev.bytes_done)} of {format_bytes(ev.bytes_total)}")

    def _upsert(self, rtype: str, name: str, state: str, elapsed: float | None) -> None:
        key = f"{rtype}/{name}"
        mark = _STATE_MARK.get(state.lower(), "·")
        # Text, not str: DataTable reads a str cell as markup, and the names come from Azure.
        cells = tuple(map(Text, (f"{mark} {state}", format_elapsed(elapsed), short_name(name), short_type(rtype))))
        table = self.table
        if key in self._row_keys:
            for column, value in zip(table.columns, cells, strict=True):
                # update_width: "… Running" then "✓ Succeeded" read "✓ Succeede" in a column
                # sized for the first state.
                table.update_cell(key, column, value, update_width=True)
        else:
            self._row_keys.add(key)
            table.add_row(*cells, key=key)
            # An explicit height: ``auto`` does not follow rows added while the table was hidden.
            table.styles.height = min(table.row_count + 1, MAX_TABLE_HEIGHT)
        self.add_class("-has-resources")

