"""``aitk local start | stop [--all] | status``: the local cloud in the background."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ._output import EXIT_OK


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    lsub = p.add_subparsers(dest="local_command", metavar="ACTION")
    c = cmd("start", "start the local cloud (in the background)", lsub)
    c.add_argument("--json", action="store_true")
    c = cmd("stop", "stop the local cloud and its replicas", lsub)
    c.add_argument("--all", action="store_true", help="stop every local cloud of this user, whatever the project")
    c = cmd("status", "is the local cloud running?", lsub)
    c.add_argument("--json", action="store_true")


def run(project: Any, args: argparse.Namespace) -> int:
    import json

    from ..local import daemon

    action = args.local_command or "status"
    state_dir = project.local_cloud_dir
    if action == "start":
        info = daemon.ensure_running(state_dir, model_path=args.model_path, adapter_path=args.adapter_path)
        if getattr(args, "json", False):
            print(json.dumps({"url": info.url, "ca_bundle": str(info.ca_bundle), "pid": info.pid}))
        else:
            print(f"Local cloud running at {info.url} (pid {info.pid}); state in {state_dir}")
        return EXIT_OK
    if action == "stop" and getattr(args, "all", False):
        dirs = daemon.stop_all()
        if not dirs:
            print("No local cloud was running.")
        for d in dirs:
            print(f"Stopped the local cloud of {d}.")
        return EXIT_OK
    if action == "stop":
        stopped = daemon.stop(state_dir)
        print("Local cloud stopped." if stopped else "The local cloud was not running.")
        return EXIT_OK
    info = daemon.status(state_dir)
    if getattr(args, "json", False):
        print(json.dumps(None if info is None else {"url": info.url, "ca_bundle": str(info.ca_bundle),
                                                     "pid": info.pid}))
    else:
        print("The local cloud is not running." if info is None
              else f"Local cloud running at {info.url} (pid {info.pid})")
    return EXIT_OK
