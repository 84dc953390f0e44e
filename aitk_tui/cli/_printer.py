"""The CLI's one renderer of events (:class:`EventPrinter`), the waking line of ``aitk chat``
(:class:`StatusLine`), :func:`drive` (print a generator's events, return its result), and
the scale lines that ``aitk status`` and ``aitk scale`` both print.

Only the standard library at module level; the back-end's helpers load on use.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ..errors import redact
from ..events import Awake, Done, Event, Failed, HealthWait, Info, LogLine, ResourceProgress, UploadProgress, Waking
from ._output import EXIT_OK, OperationFailed, error

if TYPE_CHECKING:
    from ..cloud.operate import AppScale
    from ..config.inference_config import InferenceConfig

T = TypeVar("T")


# -- progress printing ---------------------------------------------------------------------
class EventPrinter:
    """Readable progress lines on stderr; uploads and health probes are throttled."""

    def __init__(self, err: TextIO | None = None, out: TextIO | None = None, *, raw_logs: bool = False) -> None:
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self.raw_logs = raw_logs  # structured log lines as sent, not as time, level and message
        self._upload_bucket = -1
        self._upload_at = 0.0
        self._health: tuple[str, float] | None = None
        self._waking: Any = None  # StatusLine while a sleeping replica wakes

    def close(self) -> None:
        if self._waking is not None:
            self._waking.close()

    def _line(self, text: str) -> None:
        # One write with its newline (print writes the two apart): a Ctrl+C between them left
        # the line open, and "aitk: interrupted" was glued to "uploaded 1/27 files (…, 10%)".
        self.err.write(redact(text) + "\n")
        self.err.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Info):
            self._line(("warning: " if event.level == "warning" else "") + event.message)
        elif isinstance(event, ResourceProgress):
            msg = f": {event.message}" if event.message else ""
            self._line(f"  {event.state:<10} {event.resource_type} {event.resource_name}  "
                       f"({event.elapsed_s:.1f} s){msg}")
        elif isinstance(event, UploadProgress):
            now = time.monotonic()
            # By bytes: one big weights file among small ones sat at "75%" for most of the upload.
            pct = (100 * event.bytes_done // event.bytes_total if event.bytes_total
                   else 100 * event.files_done // max(1, event.files_total))
            bucket = pct // 10
            if event.files_done == event.files_total or bucket > self._upload_bucket or now - self._upload_at >= 1:
                self._upload_bucket, self._upload_at = bucket, now
                from ..cloud.sync_plan import format_size

                self._line(f"  uploaded {event.files_done}/{event.files_total} "
                           f"{'file' if event.files_total == 1 else 'files'} "
                           f"({format_size(event.bytes_done)} of {format_size(event.bytes_total)}, {pct}%)")
        elif isinstance(event, HealthWait):
            last = self._health
            if last is None or last[0] != event.status or event.elapsed_s - last[1] >= 10:
                self._health = (event.status, event.elapsed_s)
                detail = f": {event.detail}" if event.detail and event.status != "ok" else ""
                self._line(f"  /health {event.status} after {event.elapsed_s:.0f} s{detail}")
        elif isinstance(event, LogLine):
            text = event.shown(raw=self.raw_logs)
            print(redact(f"{event.time} {text}" if event.time and not self.raw_logs else text), file=self.out, flush=True)
        elif isinstance(event, Done):
            print(redact(event.summary), file=self.out, flush=True)
        elif isinstance(event, Failed):
            error(event.message, event.detail)
        elif isinstance(event, (Waking, Awake)):
            if self._waking is None:
                self._waking = StatusLine(self.err)
            if isinstance(event, Waking):
                self._waking.waking(event.elapsed_s, event.log_line)
            else:
                self._waking.awake(event.elapsed_s)


# -- the waking line -------------------------------------------------------------------------
class StatusLine:
    """``aitk chat`` while :func:`aitk_tui.chat.wake.wake` waits: one status line on stderr.

    On a terminal the line is rewritten in place ("waking the replica… 12 s · <latest replica
    log line>") and ends with a newline when the replica is awake or on Ctrl+C; into a file or
    a pipe it prints a line when the replica's log line changes or every 10 s, so a CI log
    stays short. stdout carries only the answer.
    """

    def __init__(self, err: TextIO | None = None) -> None:
        self.err = err or sys.stderr
        self.tty = bool(getattr(self.err, "isatty", lambda: False)())
        self._shown = False
        self._last: tuple[str | None, float] | None = None

    def waking(self, elapsed_s: float, log_line: str | None) -> None:
        text = f"waking the replica… {elapsed_s:.0f} s" + (f" · {log_line}" if log_line else "")
        if self.tty:
            width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
            self.err.write("\r\x1b[K" + redact(text)[:width])
            self.err.flush()
            self._shown = True
            return
        last = self._last
        if last is None or last[0] != log_line or elapsed_s - last[1] >= 10:
            self._last = (log_line, elapsed_s)
            print(redact(text), file=self.err, flush=True)

    def awake(self, elapsed_s: float) -> None:
        self.close()
        print(f"the replica is awake after {elapsed_s:.0f} s", file=self.err, flush=True)

    def close(self) -> None:
        if self._shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._shown = False


# -- driving a long operation ------------------------------------------------------------------
async def drive(events: AsyncIterator[Event], printer: EventPrinter, *, show_done: bool = True) -> Done:
    """Print every event; return the Done event, or raise OperationFailed after a Failed one."""
    from ..errors import AitkError

    done: Done | None = None
    try:
        async for event in events:
            if isinstance(event, Done):
                done = event
                if show_done:
                    printer(event)
                continue
            printer(event)
            if isinstance(event, Failed):
                raise OperationFailed(config_error=event.config_error)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    if done is None:
        raise AitkError("The operation ended without a result.")
    return done


async def drive_for(events: AsyncIterator[Event], printer: EventPrinter, kind: type[T], *,
                    show_done: bool = True) -> T:
    """:func:`drive`, then the Done's typed result, which must be a ``kind``."""
    from ..errors import AitkError

    done = await drive(events, printer, show_done=show_done)
    if not isinstance(done.result, kind):
        raise AitkError("The operation ended without a result.",
                        f"expected {kind.__name__}, got {type(done.result).__name__}")
    return done.result


# -- the scale and cost lines (aitk status, aitk scale) ------------------------------------------
def scale_json(info: "AppScale") -> dict[str, Any]:
    return {"scale": {**dataclasses.asdict(info.settings), "keeps_warm": info.settings.keeps_warm},
            "workload_profile": info.profile,
            "cost_estimate": dataclasses.asdict(info.cost) if info.cost else None}


def scale_lines(info: "AppScale") -> list[str]:
    s = info.settings
    conc = f"{s.concurrency} concurrent requests per replica{' (ACA default)' if s.concurrency_is_default else ''}"
    warm = "kept warm: a GPU bills while idle" if s.keeps_warm else "scales to zero when idle"
    lines = [f"scale:        min {s.min_replicas}, max {s.max_replicas}, {conc}; {warm}",
             f"profile:      {info.profile or '-'}"]
    if info.cost is not None:
        lines += [f"cost:         {line}" for line in info.cost.lines()]
    elif info.profile:
        lines.append(f"cost:         no estimate for the profile {info.profile} (not in the price table)")
    return lines


def not_provisioned(config: "InferenceConfig", as_json: bool) -> int:
    if as_json:
        import json

        print(json.dumps({"name": config.ACA_APP_NAME, "provisioned": False}, indent=2))
    else:
        print(f"app:          {config.ACA_APP_NAME}")
        print("provisioned:  no (the container app does not exist; `aitk provision` creates it)")
    return EXIT_OK
