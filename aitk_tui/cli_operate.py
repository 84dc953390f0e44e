"""``aitk scale`` and ``aitk down``, and the scale/cost lines of ``aitk status``.

Only the standard library at module level: :func:`add_commands` runs for every ``aitk``
invocation (the parser), the rest loads the back-end on first use.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .cli import EXIT_OK, UsageError

if TYPE_CHECKING:
    from .cloud.operate import AppScale
    from .config.inference_config import InferenceConfig
    from .project import Project

COMMANDS = ("scale", "down")


def add_commands(cmd: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = cmd("scale", "show or change the app's replicas and scale rule (an update of the app, no re-provision)")
    p.add_argument("--min", dest="min_replicas", type=int, metavar="N", help="minimum replicas (0: scale to zero)")
    p.add_argument("--max", dest="max_replicas", type=int, metavar="N", help="maximum replicas")
    p.add_argument("--concurrency", type=int, metavar="C",
                   help="concurrent requests per replica before another starts (ACA's default: 10)")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--keep-warm", action="store_true", help="min 1: no cold start, but a GPU bills all the time")
    warm.add_argument("--sleep", action="store_true", help="min 0: scale to zero when idle (no GPU billing)")
    p.add_argument("--json", action="store_true")

    p = cmd("down", "delete the container app (stops GPU billing); --all: every resource provisioning created")
    p.add_argument("--all", dest="everything", action="store_true",
                   help="also the environment, log workspace, storage account and share (the model too)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


# -- status -----------------------------------------------------------------------------------
def status_json(info: "AppScale") -> dict[str, Any]:
    return {"scale": {**dataclasses.asdict(info.settings), "keeps_warm": info.settings.keeps_warm},
            "workload_profile": info.profile,
            "cost_estimate": dataclasses.asdict(info.cost) if info.cost else None}


def status_lines(info: "AppScale") -> list[str]:
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


# -- commands -----------------------------------------------------------------------------------
def _scale_request(args: argparse.Namespace) -> Any:
    from .cloud.operate import ScaleRequest
    from .cloud.sdkerrors import InputError

    if (args.keep_warm or args.sleep) and args.min_replicas is not None:
        raise UsageError(f"--min and --{'keep-warm' if args.keep_warm else 'sleep'} contradict each other.",
                         "pass one of them")
    lo = 1 if args.keep_warm else 0 if args.sleep else args.min_replicas
    try:
        return ScaleRequest.checked(min_replicas=lo, max_replicas=args.max_replicas, concurrency=args.concurrency)
    except InputError as e:
        raise UsageError(e.message, e.detail) from None


def _confirm(question: str, expected: str | None = None) -> bool:
    if expected is None:
        print(question + " [y/N] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    print(f"{question} Type {expected} to confirm: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == expected


def run(project: "Project", args: argparse.Namespace) -> int:
    from .cli_cloud import EventPrinter, load_config, require_config, run_async

    request = _scale_request(args) if args.command == "scale" else None
    changes = request is not None and any(v is not None for v in request.model_dump().values())
    if args.command == "down" and not args.yes and not sys.stdin.isatty():
        raise UsageError("Refusing to delete without confirmation: there is no terminal to ask on.",
                         "pass --yes to delete")
    config = require_config(load_config(project), "SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "ACA_APP_NAME")
    if config.from_local_cloud and not args.local:
        raise UsageError("infra/inference.config.json is the local cloud's (its endpoint is on this machine), "
                         "not an Azure deployment.", "add --local")
    printer = EventPrinter()

    async def go() -> int:
        from .cli_cloud import open_session

        session = await open_session(project, args, printer)
        try:
            if args.command == "down":
                return await _down(session, args, printer, config)
            if changes:
                return await _scale(session, args, printer, config, request)
            return await _show_scale(session, args, config)
        finally:
            await session.close()

    return run_async(go())


async def _show_scale(session: Any, args: argparse.Namespace, config: "InferenceConfig") -> int:
    info = await session.read_scale(config)
    if info is None:
        return not_provisioned(config, args.json)
    if args.json:
        import json

        print(json.dumps({"name": info.app, **status_json(info)}, indent=2))
    else:
        print("\n".join(status_lines(info)))
    return EXIT_OK


async def _scale(session: Any, args: argparse.Namespace, printer: Any, config: "InferenceConfig",
                 request: Any) -> int:
    from .cli_cloud import drive_for
    from .cloud.operate import AppScale, Scaled

    result = await drive_for(session.scale(config, request), printer, Scaled, show_done=not args.json)
    info = AppScale(result.app, result.after, result.profile, result.cost)
    if args.json:
        import json

        print(json.dumps({"name": result.app, "changed": result.changed,
                          "before": dataclasses.asdict(result.before), **status_json(info)}, indent=2))
    elif result.cost is not None:
        for line in result.cost.lines():
            print(line, file=sys.stderr)
    return EXIT_OK


async def _down(session: Any, args: argparse.Namespace, printer: Any, config: "InferenceConfig") -> int:
    from .cli_cloud import drive
    from .cloud import teardown
    from .errors import AitkError

    try:
        plan = await teardown.plan(session.factory, config, everything=args.everything,
                                   project=session.project)
    except AitkError as e:
        raise UsageError(e.message, e.detail) from None
    except Exception as e:  # noqa: BLE001
        from .cloud.sdkerrors import describe

        raise describe(e, "list the provisioned resources") from None
    print(f"To delete in {plan.resource_group}:", file=sys.stderr)
    for t in plan.delete:
        print(f"  {t.type} {t.name}", file=sys.stderr)
    for t in plan.with_parent:
        print(f"  {t.type} {t.name} (with its parent)", file=sys.stderr)
    print(f"  ({plan.keep_note})", file=sys.stderr)
    if not args.yes:
        asked = (_confirm(f"Delete these {len(plan.delete)} resources and their data?", plan.resource_group)
                 if args.everything else _confirm(f"Delete container app {config.ACA_APP_NAME}?"))
        if not asked:
            print("Nothing was deleted.", file=sys.stderr)
            return EXIT_OK
    template = None
    if args.everything:
        try:
            import json

            template = json.loads(session.project.template_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            template = None  # the built-in api-versions serve
    await drive(teardown.down(session.factory, config, plan, template), printer)
    return EXIT_OK
