"""``aitk init [DIR]``: write ``infra/`` and ``inference_server/`` into a project folder
(a file you changed is kept and reported, never overwritten)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._output import EXIT_OK


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p.add_argument("dir", nargs="?", type=Path)


def run(project: Any, args: argparse.Namespace) -> int:
    from ..scaffold import init_project

    dest = (args.dir or args.project or Path.cwd()).resolve()
    report = init_project(dest)
    for label, names in (("wrote", report.written), ("updated", report.updated), ("kept", report.kept)):
        for name in names:
            print(f"  {label:<8} {name}", file=sys.stderr)
    for name in report.conflicts:
        print(f"  changed  {name} (yours kept; the shipped version was not applied)", file=sys.stderr)
    print(f"Project ready in {dest}: {report.summary()}.")
    return EXIT_OK
