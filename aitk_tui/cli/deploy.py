"""``aitk deploy``: sync ``inference_server/`` to the file share (only what changed), restart
the replica when anything changed, wait for ``/health``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._output import EXIT_OK, UsageError
from ._printer import EventPrinter, drive
from ._session import azure_config, run_in_session

if TYPE_CHECKING:
    from ..backend import Backend
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p.add_argument("--no-restart", action="store_true", help="only sync the files")
    p.add_argument("--restart", action="store_true",
                   help="restart the replica even when no file changed (by default it is restarted only then)")
    p.add_argument("--warn-size", type=float, default=20, metavar="MB",
                   help="warn about files larger than this (default 20 MB); skip files with .aitkignore")
    p.add_argument("--no-wait", action="store_true", help="do not wait for /health after the restart")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="how long to wait for /health (default: 1200 on Azure, 180 locally)")


def run(project: "Project", args: argparse.Namespace) -> int:
    printer = EventPrinter()
    # Checks that need no cloud come first, so a usage error is quick and clear.
    if args.restart and args.no_restart:
        raise UsageError("--restart and --no-restart contradict each other.", "pass one of them")
    if not args.warn_size >= 0:  # also NaN
        raise UsageError(f"--warn-size must be a size in MB, not {args.warn_size}.")
    from ..config.inference_config import APP_KEYS, SHARE_KEYS

    config = azure_config(project, args, *APP_KEYS, *SHARE_KEYS)
    return run_in_session(project, args, printer, lambda session: deploy(session, args, printer, config))


async def deploy(session: "Backend", args: argparse.Namespace, printer: EventPrinter, config: Any) -> int:
    await drive(session.deploy(config, restart=not args.no_restart, wait=not args.no_wait,
                               health_timeout_s=args.timeout, force_restart=args.restart,
                               warn_bytes=int(min(args.warn_size, 2.0 ** 40) * 1024 * 1024)), printer)
    return EXIT_OK
