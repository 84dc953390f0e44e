"""The container's ``pip install`` step, run for real in an environment made for the replica.

On Azure the container's command runs ``pip install -r inference_server/requirements.txt``
against the image's Python, whose torch comes with the image. Here a replica's ``pip`` (and
``python3 -m pip``) is this module, run by aitk's interpreter (see :mod:`.replica_env`):

- ``pip install ARGS`` installs into a virtual environment *layered on aitk's interpreter*:
  the venv's own site-packages come first, then (through a ``.pth``) aitk's, so torch comes
  from the machine as it comes from the image, a pinned version different from aitk's is
  installed into the venv and shadows it, and what is already satisfied costs nothing;
- the environment is keyed by the sha256 of the pip arguments, the content of every
  requirements/constraints file they name, the layer below (aitk's interpreter and its
  site-packages, or the environment of an earlier pip step of the same command), so an
  unchanged requirements file skips pip entirely on the next start: the key's environment
  is reused as built (the marker ``aitk-env.json`` is written only after pip succeeded);
- a failing pip exits with pip's status and its own error in the replica's log: the
  command stops there (``&&``) and the replica fails, as the container would;
- the environments live under ``AITK_LOCAL_ENVS`` (default ``.aitk/local/replica/envs``;
  the host's ``AITK_LOCAL_REPLICA_ENVS`` moves them, e.g. one cache for a whole test
  session); builds of one key are serialised by a lock file, so replicas of several local
  clouds can share the folder;
- the replica's ``python3`` then runs the environment's interpreter: the chosen one is
  written to the file ``AITK_LOCAL_PYTHON_FILE`` names (one per replica, emptied at each
  start, so a command with no pip step runs on aitk's interpreter as before).

``AITK_LOCAL_DEPS_CACHE=0`` (in the local cloud's environment) makes every start build its
environment afresh, as a container does on Azure (benchmarks/cold_start.py's "before").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1
MARKER = "aitk-env.json"
_FILE_OPTS = ("-r", "--requirement", "-c", "--constraint")


@dataclass(frozen=True)
class Env:
    key: str
    root: Path
    python: str
    layers: list[str]  # site-packages folders, own first, then the layers below down to aitk's

    @staticmethod
    def load(root: Path) -> "Env | None":
        try:
            data = json.loads((root / MARKER).read_text(encoding="utf-8"))
            env = Env(data["key"], root, data["python"], list(data["layers"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return env if data.get("format") == FORMAT and Path(env.python).exists() else None

    def save(self, **extra: object) -> None:
        tmp = self.root / (MARKER + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "key": self.key, "python": self.python, "layers": self.layers,
                                   **extra}, indent=1), encoding="utf-8")
        tmp.replace(self.root / MARKER)


def base_layers() -> list[str]:
    """aitk's interpreter's site-packages: the layer every replica environment sits on
    (``AITK_LOCAL_BASE_LAYERS``, os.pathsep-separated, replaces it: benchmarks/cold_start.py
    passes a folder with only torch and pip, as the image has)."""
    moved = os.environ.get("AITK_LOCAL_BASE_LAYERS")
    if moved:
        return [d for d in moved.split(os.pathsep) if d]
    dirs = [p for p in site.getsitepackages() if os.path.isdir(p)]
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and os.path.isdir(user):
        dirs.append(user)
    return dirs


def _fingerprint(layers: list[str]) -> list:
    """What the layer below is: the interpreter, and each site-packages folder's mtime (it
    changes when a package is installed, upgraded or removed there)."""
    out: list = [os.path.realpath(sys.executable), sys.version]
    for d in layers:
        try:
            out.append([d, os.stat(d).st_mtime_ns])
        except OSError:
            out.append([d, None])
    return out


def _named_files(args: list[str], cwd: Path, depth: int = 0) -> dict[str, str | None]:
    """sha256 of every requirements/constraints file the arguments name (and those files'
    own ``-r``/``-c`` lines), by path; None for a file that cannot be read (pip will say why)."""
    found: dict[str, str | None] = {}
    names: list[str] = []
    it = iter(range(len(args)))
    for i in it:
        a = args[i]
        if a in _FILE_OPTS and i + 1 < len(args):
            names.append(args[i + 1])
            next(it, None)
        elif a.startswith(("--requirement=", "--constraint=")):
            names.append(a.split("=", 1)[1])
        elif a.startswith(("-r", "-c")) and len(a) > 2 and not a.startswith("--"):
            names.append(a[2:].lstrip("="))
    for name in names:
        path = (cwd / name) if not os.path.isabs(name) else Path(name)
        try:
            data = path.read_bytes()
        except OSError:
            found[name] = None
            continue
        found[name] = hashlib.sha256(data).hexdigest()  # by the name given: one key for every project
        if depth < 5:
            nested = [tok for line in data.decode("utf-8", "replace").splitlines()
                      for tok in line.split("#", 1)[0].split() if line.strip().startswith(("-r", "-c", "--req", "--con"))]
            found.update(_named_files(nested, path.parent, depth + 1))
    return found


def env_key(args: list[str], cwd: Path, parent: Env | None) -> str:
    below = parent.layers if parent else base_layers()
    doc = {"format": FORMAT, "below": parent.key if parent else _fingerprint(below), "args": args,
           "files": _named_files(args, cwd)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _create(root: Path, key: str, parent: Env | None) -> Env:
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(root)
    python = root / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    below = parent.layers if parent else base_layers()
    # One .pth per environment: the layers below, in order, each with its own .pth files
    # (site.addsitedir), after the environment's own packages.
    lines = [f"import site; site.addsitedir({d!r})" for d in below]
    Path(own, "_aitk_layers.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Env(key, root, str(python), [own, *below])


def current_env(pointer: str | None) -> Env | None:
    """The environment an earlier pip step of this replica's command chose, if any."""
    if not pointer:
        return None
    try:
        python = Path(pointer).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Env.load(Path(python).parents[1]) if python else None


def _point(pointer: Path, env: Env) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(pointer.name + ".tmp")
    tmp.write_text(env.python + "\n", encoding="utf-8")
    tmp.replace(pointer)


def _say(text: str) -> None:
    print(f"[aitk-local] {text}", flush=True)


def _missing_requirements_file(args: list[str]) -> str | None:
    """A requirements file the arguments name that does not exist (nothing deployed yet)."""
    for i, a in enumerate(args):
        name = args[i + 1] if a in ("-r", "--requirement") and i + 1 < len(args) else \
            a.split("=", 1)[1] if a.startswith("--requirement=") else None
        if name is not None and not os.path.exists(name):
            return name
    return None


def install(args: list[str], root: Path, pointer: Path, parent: Env | None, *, cache: bool = True) -> int:
    missing = _missing_requirements_file(args)
    if missing is not None:
        # pip's own first words for this case, without paying for an environment and pip's
        # start at each restart of a crash-looping replica (a share with no code yet).
        print(f"ERROR: Could not open requirements file: [Errno 2] No such file or directory: {missing!r}",
              file=sys.stderr, flush=True)
        return 1
    key = env_key(args, Path.cwd(), parent)
    env_dir = root / key
    started = time.monotonic()
    with _locked(root / f"{key}.lock"):
        env = Env.load(env_dir) if cache else None
        if env is not None:
            _point(pointer, env)
            _say(f"pip install {' '.join(args)}: skipped, the requirements did not change "
                 f"(environment {key}, built before; {time.monotonic() - started:.2f} s)")
            return 0
        shutil.rmtree(env_dir, ignore_errors=True)
        env = _create(env_dir, key, parent)
        below = f"the environment {parent.key}" if parent else f"{sys.executable}'s {', '.join(base_layers())}"
        _say(f"pip install {' '.join(args)}: into a new environment {env_dir}, layered on {below}")
        pip_env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        pip_env.pop("PYTHONPATH", None)  # the replica's sitecustomize is for the server, not for pip
        code = subprocess.call([env.python, "-m", "pip", "install", *args], env=pip_env)
        if code != 0:
            shutil.rmtree(env_dir, ignore_errors=True)
            return code
        env.save(seconds=round(time.monotonic() - started, 2), args=args)
        _point(pointer, env)
        _say(f"pip install done in {time.monotonic() - started:.1f} s (environment {key})")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pointer = os.environ.get("AITK_LOCAL_PYTHON_FILE")
    root = os.environ.get("AITK_LOCAL_ENVS")
    parent = current_env(pointer)
    if args[:1] == ["install"] and pointer and root:
        cache = os.environ.get("AITK_LOCAL_DEPS_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")
        return install(args[1:], Path(root), Path(pointer), parent, cache=cache)
    if parent is None and args[:1] not in (["list"], ["freeze"], ["show"], ["check"], ["--version"], ["-V"], []):
        _say(f"`pip {' '.join(args)}` refused: with no environment made by `pip install`, it would change aitk's own")
        return 1
    return subprocess.call([parent.python if parent else sys.executable, "-m", "pip", *args])


if __name__ == "__main__":
    sys.exit(main())
