"""``aitk scale`` and ``aitk down``.

Only the standard library at module level: :func:`add_parser` runs to build the parser,
the rest loads the back-end on first use.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._output import EXIT_FAILED, EXIT_OK, UsageError, confirm, operation_sent
from ._printer import EventPrinter, drive, drive_for, not_provisioned, scale_json, scale_lines
from ._session import azure_config, run_in_session

if TYPE_CHECKING:
    from ..config.inference_config import InferenceConfig
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    if name == "down":
        p.add_argument("--all", dest="everything", action="store_true",
                       help="also the environment, log workspace, storage account and share (the model too)")
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        return
    p.add_argument("--min", dest="min_replicas", type=int, metavar="N", help="minimum replicas (0: scale to zero)")
    p.add_argument("--max", dest="max_replicas", type=int, metavar="N", help="maximum replicas")
    p.add_argument("--concurrency", type=int, metavar="C",
                   help="concurrent requests per replica before another starts (ACA's default: 10)")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--keep-warm", action="store_true", help="min 1: no cold start, but a GPU bills all the time")
    warm.add_argument("--sleep", action="store_true", help="min 0: scale to zero when idle (no GPU billing)")
    p.add_argument("--json", action="store_true")


# -- commands -----------------------------------------------------------------------------------
def _scale_request(args: argparse.Namespace) -> Any:
    from ..cloud.operate import ScaleRequest

    if (args.keep_warm or args.sleep) and args.min_replicas is not None:
        raise UsageError(f"--min and --{'keep-warm' if args.keep_warm else 'sleep'} contradict each other.",
                         "pass one of them")
    lo = 1 if args.keep_warm else 0 if args.sleep else args.min_replicas
    return ScaleRequest.checked(min_replicas=lo, max_replicas=args.max_replicas, concurrency=args.concurrency)


def run(project: "Project", args: argparse.Namespace) -> int:
    request = _scale_request(args) if args.command == "scale" else None
    changes = request is not None and any(v is not None for v in request.model_dump().values())
    if args.command == "down" and not args.yes and not sys.stdin.isatty():
        raise UsageError("Refusing to delete without confirmation: there is no terminal to ask on.",
                         "pass --yes to delete")
    from ..config.inference_config import APP_KEYS

    config = azure_config(project, args, *APP_KEYS, hint="add --local")
    printer = EventPrinter()

    async def go(session: Any) -> int:
        if args.command == "down":
            return await _down(session, args, printer, config)
        if changes:
            return await _scale(session, args, printer, config, request)
        return await _show_scale(session, args, config)

    return run_in_session(project, args, printer, go)


async def _show_scale(session: Any, args: argparse.Namespace, config: "InferenceConfig") -> int:
    info = await session.read_scale(config)
    if info is None:
        return not_provisioned(config, args.json)
    if args.json:
        import json

        print(json.dumps({"name": info.app, **scale_json(info)}, indent=2))
    else:
        print("\n".join(scale_lines(info)))
    return EXIT_OK


async def _scale(session: Any, args: argparse.Namespace, printer: Any, config: "InferenceConfig",
                 request: Any) -> int:
    from ..cloud.operate import AppScale, Scaled

    result = await drive_for(session.scale(config, request), printer, Scaled, show_done=not args.json)
    info = AppScale(result.app, result.after, result.profile, result.cost)
    if args.json:
        import json

        print(json.dumps({"name": result.app, "changed": result.changed,
                          "before": dataclasses.asdict(result.before), **scale_json(info)}, indent=2))
    elif result.cost is not None:
        for line in result.cost.lines():
            print(line, file=sys.stderr)
    return EXIT_OK


async def _down(session: Any, args: argparse.Namespace, printer: Any, config: "InferenceConfig") -> int:
    plan = await session.teardown_plan(config, everything=args.everything)
    print(f"To delete in {plan.resource_group}:", file=sys.stderr)
    for t in plan.delete:
        print(f"  {t.type} {t.name}", file=sys.stderr)
    for t in plan.with_parent:
        print(f"  {t.type} {t.name} (with its parent)", file=sys.stderr)
    print(f"  ({plan.keep_note})", file=sys.stderr)
    if not args.yes:
        asked = (confirm(f"Delete these {len(plan.delete)} resources and their data?", plan.resource_group)
                 if args.everything else confirm(f"Delete container app {config.ACA_APP_NAME}?"))
        if not asked:  # a declined or mistyped confirmation: the command did not do its work
            print("Nothing was deleted.", file=sys.stderr)
            return EXIT_FAILED
    operation_sent(args)
    await drive(session.tear_down(config, plan), printer)
    return EXIT_OK
