"""``aitk provision [--what-if] [--yes]``: the what-if (and the cost estimate) first, then
the ARM deployment, streaming each resource's state."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._output import EXIT_FAILED, EXIT_OK, UsageError, ask, operation_sent
from ._printer import EventPrinter, drive, drive_for
from ._session import resolve_subscription, run_in_session

if TYPE_CHECKING:
    from ..backend import Backend
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p.add_argument("--subscription", metavar="ID")
    p.add_argument("--resource-group", metavar="NAME")
    p.add_argument("--what-if", action="store_true", help="only preview the changes")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def run(project: "Project", args: argparse.Namespace) -> int:
    from ..config.parameters import ParametersDocument

    printer = EventPrinter()
    # Checks that need no cloud come first, so a usage error is quick and clear.
    params = ParametersDocument.load(project.parameters_path)
    params.validate()
    if not args.yes and not args.what_if and not sys.stdin.isatty():
        raise UsageError("Refusing to provision without confirmation: there is no terminal to ask on.",
                         "pass --yes to provision, or --what-if to preview")
    return run_in_session(project, args, printer, lambda session: provision(session, args, printer, params))


async def provision(session: "Backend", args: argparse.Namespace, printer: EventPrinter, params: Any) -> int:
    sub = await resolve_subscription(session, args.subscription)
    rg = args.resource_group or session.load_state().resource_group
    if not rg:
        raise UsageError("No resource group chosen.", "pass --resource-group NAME (see `aitk groups`)")
    if args.what_if or not args.yes:
        from ..cloud.models import WhatIf

        what_if = await drive_for(session.what_if(sub, rg, params), printer, WhatIf)
        for change in what_if.changes:
            print(f"  {change.change_type:<10} {change.resource_type} {change.name}")
        _print_cost_estimate(session, params)
        if args.what_if:
            return EXIT_OK
        if not ask(f"Provision these resources in {rg}?"):  # declined: the command did not do its work
            print("Nothing was changed.", file=sys.stderr)
            return EXIT_FAILED
    operation_sent(args)
    await drive(session.provision(sub, rg, params), printer)
    return EXIT_OK


def _print_cost_estimate(session: "Backend", params: Any) -> None:
    """One line under the what-if: what the app will cost (an estimate), when the table prices it."""
    from ..cloud.prices import estimate_for_project

    cost = estimate_for_project(params.values(), session.project.template_path)
    if cost is not None:
        print(f"  {cost.summary()}")
