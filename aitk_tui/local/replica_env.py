"""The environment a replica process starts from: what a container would have, locally.

- ``python``/``python3`` on PATH are shims for the local cloud's own interpreter, so the
  container's ``python3 -m inference_server`` runs with aitk's dependencies.
- A ``sitecustomize`` makes ``inference_server`` importable only from the mount: a replica
  runs the code deployed to the share, never aitk's installed copy (else a replica would
  "work" before anything was deployed).
- The host's ``AITK_*``/``INFERENCE_*`` settings and ``PYTHONPATH`` are not inherited;
  ``HF_HUB_OFFLINE`` is set (a local replica never downloads a model).
"""

from __future__ import annotations

import os
import shlex
import sys
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


def _ensure_support(state_dir: Path) -> tuple[Path, Path]:
    bin_dir = state_dir / "replica" / "bin"
    site_dir = state_dir / "replica" / "site"
    shim = f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n"
    for name in ("python", "python3"):
        p = bin_dir / name
        if not p.is_file() or p.read_text() != shim:
            atomic_write_text(p, shim)
            os.chmod(p, 0o755)
    sc = site_dir / "sitecustomize.py"
    if not sc.is_file() or sc.read_text() != _SITECUSTOMIZE:
        atomic_write_text(sc, _SITECUSTOMIZE)
    return bin_dir, site_dir


def base_env(state_dir: Path, mount: Path) -> dict[str, str]:
    bin_dir, site_dir = _ensure_support(Path(state_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in _DROP}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "/usr/bin:/bin")])
    env["PYTHONPATH"] = str(site_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["AITK_LOCAL_MOUNT"] = str(mount)
    return env
