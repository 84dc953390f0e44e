"""What a local replica runs: the container's command with ``/mount`` mapped to the share's
folder. Its ``pip install`` steps run for real: ``pip`` on the replica's PATH makes the
replica's environment (:mod:`.replica_deps`)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

_SEP = re.compile(r"(\s*(?:&&|;)\s*)")


class ReplicaError(Exception):
    """The replica cannot be started (the message is logged and shown as its state)."""


def map_mount(text: str, mount: Path, shell: bool = False) -> str:
    repl = str(mount)
    if shell and re.search(r"[^\w@%+=:,./-]", repl):
        repl = shlex.quote(repl)
    return re.sub(r"(?<![\w/.])/mount(?=/|\s|$|['\";])", lambda m: repl, text)


def adapters_exist(value: str) -> bool:
    """Does every folder in an AITK_ADAPTER_PATH value (PATH, or NAME=PATH,...) exist?"""
    from inference_server.adapter_spec import parse_adapters  # the server's own reading of the value

    try:
        specs = parse_adapters(value)
    except ValueError:
        return False
    return bool(specs) and all(spec.path.exists() for spec in specs)


def uploaded_adapters(value: str, mount: Path) -> list[str]:
    """The ``/mount`` paths of an AITK_ADAPTER_PATH value (PATH, or NAME=PATH,...; as the
    template sets it, before mapping) whose folder on the share holds an adapter_config.json."""
    from inference_server.adapter_spec import parse_adapters

    try:
        specs = parse_adapters(value)
    except ValueError:
        return []
    return [str(spec.path) for spec in specs
            if (Path(map_mount(str(spec.path), mount)) / "adapter_config.json").is_file()]


def build_command(argv: list[str], mount: Path, note=None) -> list[str]:
    """The container command for a local run, ``/mount`` mapped in each step."""
    if not argv:
        raise ReplicaError("the container has no command; the local cloud runs only an explicit command")
    if len(argv) >= 3 and os.path.basename(argv[0]) in ("bash", "sh") and argv[1] == "-c":
        parts = _SEP.split(argv[2])
        kept: list[str] = []
        for i in range(0, len(parts), 2):
            step = parts[i].strip()
            if step:
                if kept:
                    kept.append(f" {parts[i - 1].strip()} ")
                kept.append(map_mount(step, mount, shell=True))
        return ["/bin/bash", "-c", "".join(kept) or "true", *argv[3:]]
    return [map_mount(a, mount) for a in argv]
