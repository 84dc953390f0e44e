"""The environment a replica process starts from: what a container would have, locally.

- ``pip``/``pip3`` on PATH run the container's pip step for real (:mod:`.replica_deps`): in
  an environment keyed by the requirements' hash, layered on aitk's interpreter (whose torch
  stands in for the image's), reused as built while the requirements do not change.
- The container's dependency step (``python3 -m inference_server.deps``, the template's
  default) runs as on Azure: its local disk (``AITK_DEPS_DIR``) is a folder per app, emptied
  at each start as a new container's disk is, and its archives live on the share
  (``<mount>/.aitk/deps``; the host's ``AITK_LOCAL_DEPS_SHARE`` moves them, e.g. one cache for
  a whole test session).
- ``python``/``python3`` on PATH are shims for that environment's interpreter once a pip
  step made one, else for the local cloud's own (``python3 -m pip`` is the pip shim).
- A ``sitecustomize`` makes ``inference_server`` importable only from the mount: a replica
  runs the code deployed to the share, never aitk's installed copy (else a replica would
  "work" before anything was deployed).
- The host's ``AITK_*``/``INFERENCE_*`` settings and ``PYTHONPATH`` are not inherited;
  ``HF_HUB_OFFLINE`` is set (a local replica never downloads a model).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import threading
import time
from pathlib import Path

from ..fsutil import atomic_write_text

_SITECUSTOMIZE = '''\
"""aitk local cloud: a replica imports inference_server only from its /mount folder."""
import os
import shlex
import sys
from importlib.machinery import PathFinder

_MOUNT = os.path.realpath(os.environ.get("AITK_LOCAL_MOUNT", "") or "/nonexistent")


class _MountOnly:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname != "inference_server":
            return None
        roots = []
        for p in sys.path:
            real = os.path.realpath(p or os.getcwd())
            if real == _MOUNT or real.startswith(_MOUNT + os.sep):
                roots.append(p or os.getcwd())
        spec = PathFinder.find_spec(fullname, roots) if roots else None
        if spec is None:
            raise ModuleNotFoundError(
                "No module named 'inference_server' on the share (deploy the code first)", name=fullname)
        return spec


sys.meta_path.insert(0, _MountOnly)
'''

_DROP_PREFIXES = ("AITK_", "INFERENCE_")
_DROP = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}


_PYTHON_SHIM = """#!/bin/sh
# aitk local cloud: the container's python3 is the environment its pip step made, else aitk's.
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then shift 2; exec "$(dirname "$0")/pip" "$@"; fi
py={python}
if [ -n "$AITK_LOCAL_PYTHON_FILE" ] && [ -s "$AITK_LOCAL_PYTHON_FILE" ]; then py=$(cat "$AITK_LOCAL_PYTHON_FILE"); fi
exec "$py" "$@"
"""
_PIP_SHIM = """#!/bin/sh
# aitk local cloud: the container's pip step, run for real in a replica environment (replica_deps).
exec {python} {deps} "$@"
"""


def envs_root(state_dir: Path) -> Path:
    """Where replica environments are cached: ``AITK_LOCAL_REPLICA_ENVS``, else under the state folder."""
    moved = os.environ.get("AITK_LOCAL_REPLICA_ENVS")
    return Path(moved) if moved else Path(state_dir) / "replica" / "envs"


def _ensure_support(state_dir: Path) -> tuple[Path, Path]:
    bin_dir = state_dir / "replica" / "bin"
    site_dir = state_dir / "replica" / "site"
    python = shlex.quote(sys.executable)
    shims = {"python": _PYTHON_SHIM, "python3": _PYTHON_SHIM, "pip": _PIP_SHIM, "pip3": _PIP_SHIM}
    for name, text in shims.items():
        p = bin_dir / name
        shim = text.format(python=python, deps=shlex.quote(str(Path(__file__).with_name("replica_deps.py"))))
        if not p.is_file() or p.read_text() != shim:
            atomic_write_text(p, shim)
            os.chmod(p, 0o755)
    sc = site_dir / "sitecustomize.py"
    if not sc.is_file() or sc.read_text() != _SITECUSTOMIZE:
        atomic_write_text(sc, _SITECUSTOMIZE)
    return bin_dir, site_dir


def python_pointer(state_dir: Path, app_id: str) -> Path:
    """The file naming the interpreter a replica's pip step chose (see :mod:`.replica_deps`)."""
    return Path(state_dir) / "replica" / "run" / f"{hashlib.sha256(app_id.lower().encode()).hexdigest()[:12]}.python"


def base_env(state_dir: Path, mount: Path, app_id: str = "") -> dict[str, str]:
    bin_dir, site_dir = _ensure_support(Path(state_dir))
    pointer = python_pointer(state_dir, app_id)
    pointer.unlink(missing_ok=True)  # each start begins on the image's interpreter, as a new container does
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in _DROP}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "/usr/bin:/bin")])
    env["PYTHONPATH"] = str(site_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["AITK_LOCAL_MOUNT"] = str(mount)
    env["AITK_LOCAL_PYTHON_FILE"] = str(pointer)
    env["AITK_LOCAL_ENVS"] = str(envs_root(state_dir))
    for name in ("AITK_LOCAL_DEPS_CACHE", "AITK_LOCAL_BASE_LAYERS"):  # replica_deps' knobs (benchmarks)
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(deps_env(state_dir, mount, app_id))
    return env


def deps_env(state_dir: Path, mount: Path, app_id: str) -> dict[str, str]:
    """What ``inference_server.deps`` reads: the container's local disk (emptied now: each
    start is a new container), the share's archive folder, and the knobs the benchmark turns
    (the image's site-packages, no cache)."""
    moved = os.environ.get("AITK_LOCAL_REPLICA_DISK")  # benchmarks/cold_start.py --disk
    disk = (Path(moved) if moved else Path(state_dir) / "replica" / "disk") / \
        hashlib.sha256(app_id.lower().encode()).hexdigest()[:12]
    if disk.exists():  # the last container's disk: gone at once, deleted in the background
        try:
            disk.rename(disk.with_name(f"{disk.name}.old-{time.time_ns()}"))
        except OSError:
            shutil.rmtree(disk, ignore_errors=True)
    old = sorted(disk.parent.glob(f"{disk.name}.old-*")) if disk.parent.is_dir() else []
    if old:
        threading.Thread(target=lambda: [shutil.rmtree(p, ignore_errors=True) for p in old], daemon=True).start()
    env = {"AITK_DEPS_DIR": str(disk / "aitk-deps"),
           "AITK_DEPS_SHARE": os.environ.get("AITK_LOCAL_DEPS_SHARE") or str(Path(mount) / ".aitk" / "deps")}
    for host, name in (("AITK_LOCAL_BASE_LAYERS", "AITK_DEPS_BASE"), ("AITK_LOCAL_DEPS_CACHE", "AITK_DEPS_CACHE")):
        if os.environ.get(host):
            env[name] = os.environ[host]
    return env
