"""``aitk status [--json] [--watch [SECONDS]]`` and ``aitk logs``.

``status`` is the Endpoint view as text (80 columns): it renders
:class:`~aitk_tui.cloud.endpoint_status.EndpointStatus`; ``--watch`` reads it again every
few seconds (5 on Azure, 2 locally) until Ctrl+C. ``logs`` streams the replica's log
(health-probe lines hidden unless ``--probes``) or, with ``--system``, the platform's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..events import Failed, LogLine
from ._output import EXIT_OK, OperationFailed
from ._printer import EventPrinter, not_provisioned, scale_lines
from ._session import azure_config, run_in_session

if TYPE_CHECKING:
    from ..backend import Backend
    from ..cloud.endpoint_status import EndpointStatus
    from ..config.inference_config import InferenceConfig
    from ..project import Project

WATCH_AZURE_S = 5.0
WATCH_LOCAL_S = 2.0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_revision(name: str) -> str:
    """``aiacaapp-abcde--0000003`` -> ``0000003`` (the app's name is on the line above)."""
    return name.rsplit("--", 1)[-1] if "--" in name else name


def status_json(st: "EndpointStatus") -> dict[str, Any]:
    """The typed result as JSON, under the keys ``aitk status --json`` always had (name,
    healthy, scale, workload_profile, cost_estimate) plus the rest of the view."""
    data = st.to_json()
    name, profile, cost = data.pop("app"), data.pop("profile"), data.pop("cost")
    healthy = None if st.health in ("asleep", "unknown") else st.health == "ok"
    return {"name": name, "healthy": healthy, **data, "workload_profile": profile, "cost_estimate": cost}


def status_lines(st: "EndpointStatus", now: float | None = None) -> list[str]:
    from ..cloud.endpoint_status import age, health_words
    from ..cloud.logs import short_replica
    from ..cloud.operate import AppScale

    now = time.time() if now is None else now
    state = ", ".join(s for s in (st.provisioning_state, st.running_state) if s) or "-"
    lines = [f"app:          {st.app} ({state})",
             f"endpoint:     {st.endpoint or '-'}",
             f"health:       {_cut(health_words(st), 66)}"]
    if st.failure_reason:
        lines += textwrap.wrap(f"why:          {st.failure_reason}", 80, subsequent_indent=" " * 14,
                               break_on_hyphens=False)
    lines.append(f"revisions:    {len(st.revisions)} (latest {short_revision(st.latest_revision or '-')})")
    if st.revisions:
        # STATE as wide as Azure's longest words (RunningAtMaxScale, ActivationFailed)
        lines.append(f"  {'REVISION':<12} {'ACTIVE':<6} {'TRAFFIC':>7} {'REPLICAS':>8}  {'STATE':<17} {'AGE':>8}")
        for r in st.revisions[:5]:
            traffic = "-" if r.traffic is None else f"{r.traffic}%"
            reps = "-" if r.replicas is None else str(r.replicas)
            lines.append(f"  {_cut(short_revision(r.name), 12):<12} {'yes' if r.active else 'no':<6} {traffic:>7} "
                         f"{reps:>8}  {_cut(r.running_state or '-', 17):<17} {age(r.created, now):>8}")
        if len(st.revisions) > 5:
            lines.append(f"  … {len(st.revisions) - 5} older")
    lines.append(f"replicas:     {len(st.replicas)} ({st.ready_replicas} ready)")
    if st.replicas:
        lines.append(f"  {'REPLICA':<12} {'REVISION':<10} {'STATE':<12} {'READY':<5} {'RESTARTS':>8} {'AGE':>8}")
        for p in st.replicas[:8]:
            lines.append(f"  {_cut(short_replica(p.name), 12):<12} {_cut(short_revision(p.revision), 10):<10} "
                         f"{_cut(p.running_state or '-', 12):<12} {'yes' if p.ready else 'no':<5} "
                         f"{p.restart_count:>8} {age(p.created, now):>8}")
    if st.scale is not None:
        for line in scale_lines(AppScale(st.app, st.scale, st.profile, st.cost)):
            # wrapped under the label: the price table's source is one long line
            lines += textwrap.wrap(line, 80, subsequent_indent=" " * 14, break_on_hyphens=False) or [""]
    return lines


async def show(session: Any, config: "InferenceConfig", *, as_json: bool, watch: float | None) -> int:
    interval = None
    if watch is not None:
        interval = watch if watch > 0 else (WATCH_LOCAL_S if session.endpoints.is_local else WATCH_AZURE_S)
    tty = sys.stdout.isatty()
    while True:
        st = await session.endpoint_status(config)
        if interval is not None and tty and not as_json:
            print("\x1b[H\x1b[2J", end="")  # redraw in place, as `watch` does
        if not st.provisioned:
            not_provisioned(config, as_json)
        elif as_json:
            print(json.dumps(status_json(st), indent=None if interval else 2), flush=True)
        else:
            print("\n".join(status_lines(st)), flush=True)
        if interval is None:
            return EXIT_OK
        if not as_json:
            print(f"(every {interval:g} s; Ctrl+C stops)", flush=True)
            if not tty:
                print(flush=True)
        await asyncio.sleep(interval)


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    if name == "status":
        p.add_argument("--json", action="store_true")
        p.add_argument("--watch", "--live", nargs="?", type=float, const=0.0, default=None, metavar="SECONDS",
                       help="refresh until Ctrl+C (every 5 s on Azure, 2 s locally, or SECONDS)")
        return
    p.add_argument("--no-follow", action="store_true", help="print the recent lines and exit")
    p.add_argument("--tail", type=int, default=100, metavar="N")
    p.add_argument("--probes", action="store_true",
                   help="also show the /health probes' access lines (hidden by default)")
    p.add_argument("--system", action="store_true",
                   help="the system log instead: replica assignment, image pull, probe failures, restarts, scaling")
    p.add_argument("--raw", action="store_true",
                   help="print structured lines as sent (the server's JSON, the platform's events)")


def run(project: "Project", args: argparse.Namespace) -> int:
    printer = EventPrinter(raw_logs=getattr(args, "raw", False))
    from ..config.inference_config import APP_KEYS

    config = azure_config(project, args, *APP_KEYS)
    command = status if args.command == "status" else logs
    return run_in_session(project, args, printer, lambda session: command(session, args, printer, config))


async def status(session: "Backend", args: argparse.Namespace, printer: EventPrinter, config: Any) -> int:
    return await show(session, config, as_json=args.json, watch=args.watch)


async def logs(session: "Backend", args: argparse.Namespace, printer: EventPrinter, config: Any) -> int:
    kind = "system" if args.system else "console"
    hidden = 0
    async for event in session.replica_logs(config, follow=not args.no_follow, tail_lines=args.tail, kind=kind):
        if isinstance(event, LogLine) and event.probe and not args.probes:
            hidden += 1
            if hidden == 1:  # a tail of nothing but probes printed nothing, and said nothing
                print("(health-probe lines are hidden: --probes shows them)", file=sys.stderr, flush=True)
            continue
        printer(event)
        if isinstance(event, Failed):
            raise OperationFailed()
    return EXIT_OK
