"""``python -m aitk_tui.local serve|status|stop --state-dir DIR``.

``serve`` runs the local cloud in the foreground until SIGTERM/SIGINT, writing
``DIR/server.json`` once it answers (this is what :mod:`.daemon` starts, detached).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import AitkError
from ..fsutil import atomic_write_json


def _serve(args: argparse.Namespace) -> int:
    from . import daemon
    from .processes import proc_start_time
    from .server import LocalCloud

    state_dir = Path(args.state_dir).resolve()
    running = daemon.status(state_dir)
    if running is not None and running.pid != os.getpid():
        print(f"a local cloud already serves {state_dir} at {running.url} (pid {running.pid})", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: done.set())
    cloud = LocalCloud(state_dir, model_path=args.model, adapter_path=args.adapter, op_delay_s=args.op_delay,
                       port=args.port)
    try:
        cloud.start()
    except AitkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        atomic_write_json(state_dir / daemon.SERVER_JSON, {
            "pid": os.getpid(), "url": cloud.url, "ca_bundle": cloud.ca_bundle, "state_dir": str(state_dir),
            "model_path": str(cloud.model_path or ""), "adapter_path": str(cloud.adapter_path or ""),
            "started": time.time(), "pid_start": proc_start_time(os.getpid())})
        daemon.register(state_dir, os.getpid(), cloud.url)  # for `aitk local stop --all`
        print(f"local cloud serving {cloud.url} (pid {os.getpid()}); CA: {cloud.ca_bundle}", file=sys.stderr, flush=True)
        done.wait()
    finally:
        logging.getLogger("aitk_tui.local").info("stopping")
        cloud.stop()
        daemon.remove_server_record(state_dir, os.getpid())
        daemon.unregister(state_dir, os.getpid())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aitk_tui.local", description="aitk's local cloud")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve in the foreground until SIGTERM")
    for p in (serve, sub.add_parser("status", help="print the running server as JSON"),
              sub.add_parser("stop", help="stop the server and its replicas")):
        p.add_argument("--state-dir", required=True, type=Path, help="the cloud's state folder (.aitk/local)")
    serve.add_argument("--port", type=int, default=0, help="port (default: the last one used, else any free one)")
    serve.add_argument("--model", type=Path, help="base model folder every replica serves")
    serve.add_argument("--adapter", type=Path, help="LoRA adapter folder every replica serves")
    serve.add_argument("--op-delay", type=float, default=float(os.environ.get("AITK_LOCAL_OP_DELAY") or 0.3),
                       help="seconds between a deployed resource's states [AITK_LOCAL_OP_DELAY, default 0.3]")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    from . import daemon

    if args.command == "status":
        info = daemon.status(args.state_dir)
        print(json.dumps(None if info is None else {"pid": info.pid, "url": info.url, "ca_bundle": info.ca_bundle}))
        return 0 if info else 1
    return 0 if daemon.stop(args.state_dir) else 1


if __name__ == "__main__":
    sys.exit(main())
