"""``aitk whoami``, ``aitk subscriptions`` and ``aitk groups [create NAME --location L]``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._output import EXIT_OK, print_json
from ._printer import EventPrinter
from ._session import remembered, resolve_subscription, run_in_session

if TYPE_CHECKING:
    from ..backend import Backend
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    if name in ("whoami", "subscriptions"):
        p.add_argument("--json", action="store_true")
        return
    p.add_argument("--subscription", metavar="ID")
    p.add_argument("--json", action="store_true")
    gsub = p.add_subparsers(dest="groups_command", metavar="ACTION")
    c = cmd("create", "create a resource group", gsub)
    c.add_argument("name")
    c.add_argument("--location", required=True)
    c.add_argument("--subscription", metavar="ID", default=argparse.SUPPRESS)


def run(project: "Project", args: argparse.Namespace) -> int:
    printer = EventPrinter()
    command = {"whoami": whoami, "subscriptions": subscriptions, "groups": groups}[args.command]
    return run_in_session(project, args, printer, lambda session: command(session, args, printer))


async def whoami(session: "Backend", args: argparse.Namespace, printer: EventPrinter) -> int:
    identity = await session.whoami()
    if args.json:
        print_json(dataclasses.asdict(identity))
    else:
        tenant = f" in tenant {identity.tenant_id}" if identity.tenant_id else ""
        print(f"{identity.display_name}{tenant} (via {identity.method})")
    return EXIT_OK


async def subscriptions(session: "Backend", args: argparse.Namespace, printer: EventPrinter) -> int:
    subs = await session.list_subscriptions()
    if args.json:
        print_json([dataclasses.asdict(s) for s in subs])
        return EXIT_OK
    current = remembered(session, session.load_state().subscription_id)
    if not subs:
        print("No subscriptions: this account cannot use any Azure subscription.", file=sys.stderr)
    for s in subs:
        mark = "*" if s.id == current else " "
        print(f"{mark} {s.id}  {s.name}  ({s.state})")
    return EXIT_OK


async def groups(session: "Backend", args: argparse.Namespace, printer: EventPrinter) -> int:
    sub = await resolve_subscription(session, args.subscription)
    if args.groups_command == "create":
        group = await session.create_resource_group(sub, args.name, args.location)
        print(f"Resource group {group.name} is ready in {group.location}.")
        return EXIT_OK
    groups = await session.list_resource_groups(sub)
    if args.json:
        print_json([dataclasses.asdict(g) for g in groups])
        return EXIT_OK
    if not groups:
        print(f"No resource groups in subscription {sub}. Create one with: "
              "aitk groups create NAME --location LOCATION", file=sys.stderr)
    current = session.load_state().resource_group
    for g in groups:
        print(f"{'*' if g.name == current else ' '} {g.name}  ({g.location})")
    return EXIT_OK
