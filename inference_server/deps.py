"""The container's dependency step, built once and then read back from the share.

    python3 -m inference_server.deps inference_server/requirements.txt   (then: python3 -m inference_server)

Standard library only: it runs on the image's bare Python, before anything is installed.

What a start does:

- **key**: sha256 of the requirements file's bytes (and of the files its ``-r``/``-c`` lines
  name), the interpreter (its path and version), the image's torch version (read from its
  metadata, torch is not imported), the site-packages folders below (path and mtime), the
  image name when the template passes it (``AITK_CONTAINER_IMAGE``) and a format number;
- **unchanged** (the folder ``<share>/<key>/`` exists): its parts (``PARTS`` gzip tar
  archives and a manifest) are extracted to the container's local disk, several at once (one
  per core the container has, up to ``PARTS``): a few sequential reads of the share instead
  of thousands of small-file opens at import, and the decompression (one core's work for a
  single archive: 1.6 s for this server's 94 MiB) spread over the cores. An archive that
  cannot be read (a part truncated, corrupt or missing, of another key) is ignored and
  rebuilt;
- **changed**: a virtual environment is made on local disk, *layered on the image's
  interpreter* (its own site-packages first, then the image's through a ``.pth``, so torch
  comes from the image, a pinned version that differs from the image's shadows it, and pip
  skips what the image already satisfies), ``pip install -r FILE`` runs in it (its output
  and exit status are the step's: a requirement that cannot install fails the replica with
  pip's own error), then the environment is published as ``<key>/`` (its parts written into
  a temporary folder that is renamed when whole: a killed build never leaves half an
  archive; of two replicas building at once, the first rename wins and the other drops
  its copy). The newest ``KEEP`` archives are kept, older keys deleted;
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

import gzip
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FORMAT = 2  # 1: one <key>.tar.gz (pruned like any old key)
KEEP = 3  # archives kept on the share (the newest; the one in use is always kept)
MARKER = "aitk-deps.json"  # inside an environment, written last (and the last part's last member)
MANIFEST = "manifest.json"  # in an archive folder: its key and parts (name, bytes), written last
PARTS = 8  # archives an environment is split into (each about as much work to extract)
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
ENTRY_COST = 16384  # bytes one file or folder weighs when the parts are balanced (creating it costs)
ACTIVE = "active.json"  # in the local folder: the environment the server start uses
STALE_TMP_S = 3600  # a temporary archive folder this old belongs to a killed build
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
    for script in (root / "bin").iterdir() if (root / "bin").is_dir() else ():
        if script.is_file() and not script.is_symlink():
            with open(script, "rb") as f:
                head = f.read(len(old))
            if head == old:
                script.write_bytes(new + script.read_bytes()[len(old):])


# -- the archive on the share --------------------------------------------------------------------
def archive_path(key: str) -> Path:
    return share_dir() / key


def cpus() -> int:
    """Cores this container may use: its CPU affinity, capped by a cgroup v2 quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        quota, period = CPU_MAX.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def split(entries: list[tuple[str, int]], parts: int) -> list[list[str]]:
    """Cut ``entries`` (path, bytes; in path order) into at most ``parts`` runs of about equal
    weight (bytes plus ``ENTRY_COST`` each): runs, so that a folder's files mostly share a part."""
    total = sum(size + ENTRY_COST for _, size in entries)
    out: list[list[str]] = [[]]
    done = 0
    for name, size in entries:
        if out[-1] and len(out) < parts and done >= total * len(out) / parts:
            out.append([])
        out[-1].append(name)
        done += size + ENTRY_COST
    return [p for p in out if p]


def _write_part(root: Path, dest: Path, names: list[str], last: bool) -> int:
    with tarfile.open(dest, "w:gz", compresslevel=1) as tf:
        for name in names:
            tf.add(root / name, arcname=name, recursive=False)
        if last:
            tf.add(root / MARKER, arcname=MARKER)  # last: an archive cut short has no marker
    with open(dest, "rb+") as f:
        os.fsync(f.fileno())
    return dest.stat().st_size


def publish(root: Path, key: str, *, replace: bool = False) -> Path | None:
    """Write the environment as the folder ``<key>/`` on the share: ``PARTS`` gzip tar archives
    and the manifest, in a temporary folder renamed when whole. ``replace``: the archive there
    could not be read by this start (it goes, even if its manifest looks whole)."""
    dest = archive_path(key)
    tmp = dest.with_name(f".{dest.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed build's, when a restarted container has the same pid
        tmp.mkdir(parents=True)
        paths = sorted(root.rglob("*"))  # a folder before what it holds
        folders = [p.relative_to(root).as_posix() for p in paths if p.is_dir() and not p.is_symlink()]
        entries = [(p.relative_to(root).as_posix(), p.lstat().st_size if p.is_file() and not p.is_symlink() else 0)
                   for p in paths if not p.is_dir() or p.is_symlink()]
        # The folders are made first, before the parts run at once: two tar processes making the
        # same folder at once fail ("Cannot mkdir: No such file or directory").
        runs = split([e for e in entries if e[0] != MARKER], PARTS) or [[]]
        names = [f"part-{i}.tar.gz" for i in range(len(runs))]
        with ThreadPoolExecutor(max_workers=min(len(runs), cpus())) as pool:  # zlib works outside the GIL
            sizes = list(pool.map(lambda i: _write_part(root, tmp / names[i], runs[i], i == len(runs) - 1),
                                  range(len(runs))))
        _write_json(tmp / MANIFEST, {"format": FORMAT, "key": key, "files": len(entries), "folders": folders,
                                     "parts": [[n, b] for n, b in zip(names, sizes, strict=True)]})
        _take_place(tmp, dest, key, replace)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _say(f"could not write the environment's archive to {dest} ({exc}); the next start builds it again")
        return None
    return dest


def _take_place(tmp: Path, dest: Path, key: str, replace: bool) -> None:
    """Rename the folder ``tmp`` to ``dest``. A ``dest`` already there is the unreadable archive
    this build replaces, or another replica published first (it stays and ``tmp`` goes), unless
    its manifest shows it is not whole."""
    try:
        os.rename(tmp, dest)
        return
    except OSError:
        if not dest.exists():
            raise
    if not replace:
        try:
            archive_parts(dest, key)  # whole
            shutil.rmtree(tmp, ignore_errors=True)
            return
        except tarfile.ReadError:
            pass
    aside = dest.with_name(f".{dest.name}.{socket.gethostname()}.{os.getpid()}.old")
    try:
        os.rename(dest, aside)
        os.rename(tmp, dest)
    except OSError:
        pass  # another replica moved it first: its archive stands
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def archive_parts(archive: Path, key: str) -> tuple[list[Path], list[str]]:
    """The part files of the archive folder of ``key`` and the environment's folders (relative,
    a folder before what it holds); ReadError when the archive is not whole."""
    try:
        manifest = json.loads((archive / MANIFEST).read_text(encoding="utf-8"))
        parts = [(archive / str(name), int(size)) for name, size in manifest["parts"]]
        folders = [str(f) for f in manifest["folders"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise tarfile.ReadError(f"no readable {MANIFEST} ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("key") != key or not parts:
        raise tarfile.ReadError(f"{MANIFEST} is of another environment")
    if any(os.path.isabs(f) or ".." in Path(f).parts for f in folders):
        raise tarfile.ReadError(f"{MANIFEST} names a folder outside the environment")
    for path, size in parts:
        if path.parent != archive or not path.is_file() or path.stat().st_size != size:
            raise tarfile.ReadError(f"{path.name} is missing or not the size the manifest says")
    return [path for path, _ in parts], folders


def _extract_part(part: Path, dest: Path, tar: str | None) -> None:
    if tar:  # GNU tar: about twice as fast as tarfile on ~10,000 small files
        done = subprocess.run([tar, "-xzf", str(part), "-C", str(dest)], capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"tar exited {done.returncode}"]
            raise tarfile.ReadError(f"{part.name}: {lines[0]}")  # the first error, not "Exiting with failure status"
        return
    with gzip.open(part, "rb") as gz:
        with tarfile.open(fileobj=gz, mode="r|") as tf:
            # The share is trusted as the code on it is; "tar" keeps the interpreter's absolute
            # symlink and still refuses members outside the folder.
            tf.extractall(dest, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
        while gz.read(1 << 20):  # to the end: gzip checks its CRC there (tarfile stops at the tar's end)
            pass


def extract(archive: Path, root: Path, key: str) -> bool:
    """Unpack the archive folder ``archive`` into ``root``, its parts at once on as many cores;
    False (nothing left behind) when it is not a whole archive of ``key``."""
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        parts, folders = archive_parts(archive, key)
        tmp.mkdir(parents=True)
        for folder in folders:
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=min(len(parts), cpus())) as pool:
            tar = shutil.which("tar")
            for _ in pool.map(lambda part: _extract_part(part, tmp, tar), parts):
                pass  # re-raises the first part's error
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


def _is_archive(path: Path) -> bool:
    """An archive folder (``<key>/``), or an archive of format 1 (``<key>.tar.gz``)."""
    name = path.name.removesuffix(".tar.gz")
    return len(name) == 24 and all(c in "0123456789abcdef" for c in name)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass  # another replica's prune got there first, or the share refuses: harmless


def prune(keep_key: str) -> None:
    """Keep the newest ``KEEP`` archives (and ``keep_key``'s); drop stale temporary ones."""
    folder = share_dir()
    try:
        entries = [(p, p.stat().st_mtime) for p in folder.iterdir()]
    except OSError:
        return
    archives = sorted(((p, m) for p, m in entries if _is_archive(p)), key=lambda pm: pm[1], reverse=True)
    doomed = [p for p, _ in archives[KEEP:] if p.name != keep_key]
    doomed += [p for p, m in entries if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))
               and time.time() - m > STALE_TMP_S]
    for p in doomed:
        _remove(p)


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
    elif cache and archive.is_dir() and extract(archive, root, key):
        parts = [p.stat().st_size for p in archive.iterdir() if p.name.endswith(".tar.gz")]
        try:
            os.utime(archive)  # recently used: kept by the next prune
        except OSError:
            pass
        _say(f"{what}: unchanged, environment {key} extracted from {archive} ({sum(parts) / 2**20:.1f} MiB) "
             f"in {time.monotonic() - started:.2f} s ({len(parts)} parts, {min(len(parts), cpus())} at once)")
    else:
        unreadable = cache and archive.exists()  # it was there, and extract() said why it is unusable
        code = build(root, key, requirements, layers)
        if code != 0:
            return code
        built = time.monotonic() - started
        if cache:
            t0 = time.monotonic()
            if publish(root, key, replace=unreadable):
                parts = [p.stat().st_size for p in archive.iterdir() if p.name.endswith(".tar.gz")]
                _say(f"environment {key} saved as {archive} ({sum(parts) / 2**20:.1f} MiB in {len(parts)} parts) "
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
