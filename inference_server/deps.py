"""The container's dependency step, built once and then read back from the share.

    python3 -m inference_server.deps inference_server/requirements.txt   (then: python3 -m inference_server)

Standard library only: it runs on the image's bare Python, before anything is installed.

What a start does:

- **key**: sha256 of the requirements file's bytes (and of the files its ``-r``/``-c`` lines
  name), the interpreter (its path and version), the image's torch version (read from its
  metadata, torch is not imported), the site-packages folders below (path and mtime), the
  image name when the template passes it (``AITK_CONTAINER_IMAGE``) and a format number;
- **unchanged** (``<share>/<key>.tar.gz`` exists): the archive is extracted to the container's
  local disk, one sequential read of the share instead of thousands of small-file opens at
  import; an archive that cannot be read (truncated, corrupt, of another key) is ignored and
  rebuilt;
- **changed**: a virtual environment is made on local disk, *layered on the image's
  interpreter* (its own site-packages first, then the image's through a ``.pth``, so torch
  comes from the image, a pinned version that differs from the image's shadows it, and pip
  skips what the image already satisfies), ``pip install -r FILE`` runs in it (its output
  and exit status are the step's: a requirement that cannot install fails the replica with
  pip's own error), then the environment is published as ``<key>.tar.gz`` (written under a
  temporary name and renamed: a killed build never leaves half an archive; two replicas
  building at once each rename a whole archive, the last one wins). The newest
  ``KEEP`` archives are kept, older keys deleted;
- the step writes ``active.json`` in the local folder; ``python3 -m inference_server``
  (:func:`use_prepared_environment`, before any third-party import) re-executes itself with
  that environment's interpreter. The file is honoured only by a process of the same session
  as the step (the container's command), so a stale one never changes another run.

Environment: ``AITK_DEPS_DIR`` (local disk; default ``/tmp/aitk-deps``), ``AITK_DEPS_SHARE``
(the archives; default ``/mount/.aitk/deps``), ``AITK_DEPS_CACHE=0`` (build every start and
publish nothing, as a plain pip step does), ``AITK_DEPS_BASE`` (os.pathsep-separated
site-packages folders to layer on instead of the interpreter's own), ``AITK_CONTAINER_IMAGE``.
To force a rebuild, delete the archive (or change the requirements file: any byte counts).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import site
import socket
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

FORMAT = 1
KEEP = 3  # archives kept on the share (the newest; the one in use is always kept)
MARKER = "aitk-deps.json"  # inside an environment, written last (and the archive's last member)
ACTIVE = "active.json"  # in the local folder: the environment the server start uses
STALE_TMP_S = 3600  # a temporary archive this old belongs to a killed build
_FILE_OPTS = ("-r", "--requirement", "-c", "--constraint")


def _say(text: str) -> None:
    print(f"[aitk-deps] {text}", flush=True)


def local_dir() -> Path:
    return Path(os.environ.get("AITK_DEPS_DIR") or "/tmp/aitk-deps")


def share_dir() -> Path:
    return Path(os.environ.get("AITK_DEPS_SHARE") or "/mount/.aitk/deps")


def cache_enabled() -> bool:
    return os.environ.get("AITK_DEPS_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def base_layers() -> list[str]:
    """The site-packages folders the environment sits on: the image's."""
    moved = os.environ.get("AITK_DEPS_BASE")
    if moved:
        return [d for d in moved.split(os.pathsep) if d]
    dirs = [p for p in site.getsitepackages() if os.path.isdir(p)]
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and os.path.isdir(user):
        dirs.append(user)
    return dirs


def requirement_files(name: str, depth: int = 0) -> dict[str, str]:
    """sha256 of a requirements file and of the files its ``-r``/``-c`` lines name (OSError if
    the first cannot be read; a nested one that cannot is left for pip to report)."""
    path = Path(name)
    data = path.read_bytes()
    found = {name: hashlib.sha256(data).hexdigest()}
    if depth < 5:
        for line in data.decode("utf-8", "replace").splitlines():
            words = line.split("#", 1)[0].split()
            for i, word in enumerate(words):
                nested = None
                if word in _FILE_OPTS and i + 1 < len(words):
                    nested = words[i + 1]
                elif word.startswith(("--requirement=", "--constraint=")):
                    nested = word.split("=", 1)[1]
                elif word[:2] in ("-r", "-c") and len(word) > 2 and not word.startswith("--"):
                    nested = word[2:].lstrip("=")
                if nested:
                    nested = nested if os.path.isabs(nested) else str(path.parent / nested)
                    try:
                        found.update(requirement_files(nested, depth + 1))
                    except OSError:
                        found[nested] = ""
    return found


def torch_version(layers: list[str]) -> str | None:
    dist = next(iter(importlib.metadata.distributions(name="torch", path=layers)), None)
    return dist.version if dist else None


def env_key(files: dict[str, str], layers: list[str]) -> str:
    below = []
    for d in layers:
        try:
            below.append([d, os.stat(d).st_mtime_ns])
        except OSError:
            below.append([d, None])
    doc = {"format": FORMAT, "files": sorted(files.values()), "python": [os.path.realpath(sys.executable), sys.version,
                                                                         platform.machine()],
           "torch": torch_version(layers), "image": os.environ.get("AITK_CONTAINER_IMAGE", ""), "below": below}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


# -- the environment on local disk ---------------------------------------------------------------
def _marker(root: Path) -> dict | None:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def build(root: Path, key: str, requirements: list[str], layers: list[str]) -> int:
    """Make the environment at ``root`` and run pip in it; pip's exit status (0: built)."""
    import venv

    shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(root)
    python = root / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # The layers below, in order, each with its own .pth files, after the environment's own packages.
    Path(own, "_aitk_layers.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in layers),
                                             encoding="utf-8")
    args = [a for name in requirements for a in ("-r", name)]
    _say(f"pip install {' '.join(args)}: into a new environment {root}, layered on {os.pathsep.join(layers)}")
    pip_env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    pip_env.pop("PYTHONPATH", None)
    code = subprocess.call([str(python), "-m", "pip", "install", *args], env=pip_env)
    if code != 0:
        shutil.rmtree(root, ignore_errors=True)
        return code
    _write_json(root / MARKER, {"format": FORMAT, "key": key, "root": str(root), "python": str(python),
                                "requirements": requirements, "seconds": round(time.monotonic() - started, 2)})
    return 0


def _relocate(root: Path, built_at: str) -> None:
    """Point the console scripts' ``#!`` lines at ``root`` when it was built elsewhere."""
    old, new = f"#!{built_at}/".encode(), f"#!{root}/".encode()
    for script in (root / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            with open(script, "rb") as f:
                head = f.read(len(old))
            if head == old:
                script.write_bytes(new + script.read_bytes()[len(old):])


# -- the archive on the share --------------------------------------------------------------------
def archive_path(key: str) -> Path:
    return share_dir() / f"{key}.tar.gz"


def publish(root: Path, key: str) -> Path | None:
    """Write the environment as ``<key>.tar.gz`` on the share (temporary name, then renamed)."""
    dest = archive_path(key)
    tmp = dest.with_name(f".{dest.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if rel.as_posix() != MARKER:
                    tf.add(path, arcname=rel.as_posix(), recursive=False)
            tf.add(root / MARKER, arcname=MARKER)  # last: an archive cut short has no marker
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _say(f"could not write the environment's archive to {dest} ({exc}); the next start builds it again")
        return None
    return dest


def extract(archive: Path, root: Path, key: str) -> bool:
    """Unpack ``archive`` into ``root``; False (nothing left behind) when it is not a whole
    archive of ``key``."""
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        tar = shutil.which("tar")
        if tar:  # GNU tar: about twice as fast as tarfile on ~10,000 small files
            done = subprocess.run([tar, "-xzf", str(archive), "-C", str(tmp)], capture_output=True, text=True)
            if done.returncode != 0:
                raise tarfile.ReadError((done.stderr.strip().splitlines() or [f"tar exited {done.returncode}"])[-1])
        else:
            with tarfile.open(archive, "r:gz") as tf:
                # The share is trusted as the code on it is; "tar" keeps the interpreter's
                # absolute symlink and still refuses members outside the folder.
                tf.extractall(tmp, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
        marker = _marker(tmp)
        if marker is None or marker.get("key") != key:
            raise tarfile.ReadError("no marker of this key (an archive cut short, or of another environment)")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _say(f"the archive {archive} is unreadable ({exc}): ignored, building again")
        return False
    if marker.get("root") != str(root):
        _relocate(tmp, marker["root"])
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return True


def prune(keep_key: str) -> None:
    """Keep the newest ``KEEP`` archives (and ``keep_key``'s); drop stale temporary ones."""
    folder = share_dir()
    try:
        entries = [(p, p.stat().st_mtime) for p in folder.iterdir()]
    except OSError:
        return
    archives = sorted(((p, m) for p, m in entries if p.name.endswith(".tar.gz") and not p.name.startswith(".")),
                      key=lambda pm: pm[1], reverse=True)
    doomed = [p for p, _ in archives[KEEP:] if p.name != f"{keep_key}.tar.gz"]
    doomed += [p for p, m in entries if p.name.endswith(".tmp") and time.time() - m > STALE_TMP_S]
    for p in doomed:
        try:
            p.unlink()
        except OSError:
            pass  # another replica's prune got there first, or the share refuses: harmless


# -- the step --------------------------------------------------------------------------------------
def prepare(requirements: list[str]) -> int:
    started = time.monotonic()
    files: dict[str, str] = {}
    for name in requirements:
        try:
            files.update(requirement_files(name))
        except OSError as exc:
            # pip's own words for this case (aitk's status reads them)
            print(f"ERROR: Could not open requirements file: [Errno {exc.errno}] {exc.strerror}: {name!r}",
                  file=sys.stderr, flush=True)
            return 1
    layers = base_layers()
    key = env_key(files, layers)
    root = local_dir() / key
    root.parent.mkdir(parents=True, exist_ok=True)
    cache = cache_enabled()
    archive = archive_path(key)
    what = " ".join(requirements)
    if cache and (_marker(root) or {}).get("key") == key:  # this container's disk has it already
        _say(f"{what}: unchanged, environment {key} already on this disk")
    elif cache and archive.is_file() and extract(archive, root, key):
        size = archive.stat().st_size
        try:
            os.utime(archive)  # recently used: kept by the next prune
        except OSError:
            pass
        _say(f"{what}: unchanged, environment {key} extracted from {archive} ({size / 2**20:.1f} MiB) "
             f"in {time.monotonic() - started:.2f} s")
    else:
        code = build(root, key, requirements, layers)
        if code != 0:
            return code
        built = time.monotonic() - started
        if cache:
            t0 = time.monotonic()
            if publish(root, key):
                _say(f"environment {key} saved as {archive} ({archive.stat().st_size / 2**20:.1f} MiB) "
                     f"in {time.monotonic() - t0:.2f} s")
                prune(key)
        _say(f"{what}: installed in {built:.1f} s (environment {key})")
    _write_json(local_dir() / ACTIVE, {"format": FORMAT, "key": key, "root": str(root),
                                       "python": str(root / "bin" / "python"), "sid": os.getsid(0)})
    return 0


def use_prepared_environment(argv: list[str]) -> None:
    """Re-execute ``python -m inference_server ARGV`` with the interpreter of the environment
    the deps step of this same command prepared; return when there is none (a plain pip step,
    or no step) or this process already runs in it."""
    if os.environ.get("AITK_DEPS_ACTIVE"):
        return
    try:
        data = json.loads((local_dir() / ACTIVE).read_text(encoding="utf-8"))
        python, root, sid = str(data["python"]), str(data["root"]), int(data["sid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if sid != os.getsid(0) or not os.path.exists(python) or os.path.realpath(sys.prefix) == os.path.realpath(root):
        return
    env = dict(os.environ, AITK_DEPS_ACTIVE=str(data.get("key", "1")))
    os.execve(python, [python, "-m", "inference_server", *argv], env)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = [a for a in args if a not in ("-r", "--requirement")]
    if not names or any(a.startswith("-") for a in names):
        print("usage: python -m inference_server.deps REQUIREMENTS_FILE [...]", file=sys.stderr)
        return 2
    return prepare(names)


if __name__ == "__main__":
    sys.exit(main())
