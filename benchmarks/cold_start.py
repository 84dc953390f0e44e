"""The phases of a wake from zero on the local cloud, before and after the dependency cache.

    python benchmarks/cold_start.py [--wakes 2] [--keep] [--disk DIR | --journaled-disk]

A wake from zero on Azure: the container starts from the image, runs the template's
command, imports torch and transformers, loads the weights from the share, and answers the
request that woke it. This script does exactly that on the local cloud with the real
template, the real ``inference_server/`` and the built-in demo model:

- the "image" is a folder holding only torch (and what torch needs) and pip, linked from
  this machine's environment: the replica's environment sits on it, so its dependency step
  has to install transformers, peft, fastapi... as it does on the image (pip's cache is the
  share's ``.cache/pip``, as the template sets ``PIP_CACHE_DIR``; the first wake fills it);
- **before**: AI Toolkit's command (``cd /mount && pip install -r
  inference_server/requirements.txt && python3 -m inference_server``), pip run at every
  start (``AITK_LOCAL_DEPS_CACHE=0``), as a container did on Azure;
- **after**: the template's command (``python3 -m inference_server.deps
  inference_server/requirements.txt`` in place of the pip line): the first start builds the
  environment and archives it on the share (not timed); each timed wake is a new container
  (empty local disk) that extracts the archive (:mod:`inference_server.deps`).

Each wake: the app scales to zero (idle 1 s), a streamed chat request wakes it, and the
replica's log lines are stamped as they arrive. Phases:
dependencies (replica start -> pip done, or the archive extracted), imports (-> the server's
``runtime:`` line: torch and transformers imported), weights (-> ``ready``), first token (->
the first streamed token at the client). Prints a table, the ratio of the dependency phases,
and the archive's size and extract time (the deps step's own figures).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_DEPS_S = 3.0
PIP_LINE = ["cd /mount", "pip install -r inference_server/requirements.txt", "python3 -m inference_server"]
DEPS_STEP = ["cd /mount", "python3 -m inference_server.deps inference_server/requirements.txt",
             "python3 -m inference_server"]


def filesystem_of(path: Path) -> str:
    """The filesystem ``path`` is on, in words; says so when it is ext4 without a journal.

    Such an ext4 (this VM's root: "mounted filesystem r/w without journal") checks every
    candidate inode of a new file against the ones deleted in the last 60-360 s and skips
    them one by one (``recently_deleted`` in fs/ext4/ialloc.c, only when there is no
    journal): creating the ~13,000 files of an environment right after another container's
    disk was deleted then takes 8-10 s of kernel time instead of about 1 s. ext4 as
    ``mkfs.ext4`` makes it (with a journal), xfs and tmpfs do not do this."""
    path = path.resolve()
    best = ("?", "?", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype, *_ = line.split()
            if (path == Path(mnt) or Path(mnt) in path.parents) and len(mnt) >= len(best[2]):
                best = (dev, fstype, mnt)
    except OSError:
        return "unknown"
    dev, fstype, mnt = best
    words = f"{fstype} on {mnt}"
    if fstype == "ext4":
        try:
            task = Path(f"/sys/fs/ext4/{Path(dev).name}/journal_task").read_text().strip()
        except OSError:
            task = ""
        if task == "<none>":
            words += (" WITHOUT a journal: file creation right after deletions is slow there (see filesystem_of); "
                      "for figures like a container's disk, pass --disk on a journaled filesystem")
    return words


def image_layer(dest: Path) -> Path:
    """A site folder with links to torch, its dependencies and pip: what the image brings."""
    from packaging.requirements import Requirement

    dest.mkdir(parents=True, exist_ok=True)
    todo, seen = ["torch", "pip"], set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        base = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            src, link = base / top, dest / top
            if src.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(src)
    return dest


class Stamper(threading.Thread):
    """Tail a log file; stamp each new line with the time it was seen."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.stop = path, [], threading.Event()
        self.offset = path.stat().st_size if path.exists() else 0

    def run(self) -> None:
        buf = ""
        while not self.stop.is_set():
            if self.path.exists():
                with open(self.path, "r", encoding="utf-8", errors="replace") as f:
                    f.seek(self.offset)
                    chunk = f.read()
                    self.offset = f.tell()
                if chunk:
                    now = time.perf_counter()
                    buf += chunk
                    *done, buf = buf.split("\n")
                    self.lines.extend((now, line) for line in done)
            time.sleep(0.01)

    def first(self, pattern: str, after: float = 0.0) -> float | None:
        rx = re.compile(pattern)
        return next((t for t, line in self.lines if t >= after and rx.search(line)), None)


def wake(cloud, app_id: str, endpoint: str, api_key: str, ca: str) -> dict[str, float]:
    import httpx

    sup = cloud.replicas
    deadline = time.monotonic() + 120
    while sup.status(app_id)["state"] != "ScaledToZero":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the app did not scale to zero: {sup.status(app_id)}")
        time.sleep(0.1)
    stamper = Stamper(cloud.log_path(app_id))
    stamper.start()
    t0 = time.perf_counter()
    first_token = None
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0, "stream": True}
    with httpx.Client(verify=ca, timeout=600) as client:
        while first_token is None:
            # The ingress passes the request on once the replica answers HTTP; while the
            # model loads the server says 503: ask again, as a waking client does.
            with client.stream("POST", f"https://{endpoint}/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {api_key}"}) as resp:
                if resp.status_code == 503:
                    time.sleep(0.05)
                    continue
                resp.raise_for_status()
                for line in resp.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        chunk = json.loads(line[6:])
                        if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                            first_token = time.perf_counter()
                            break
    time.sleep(0.05)
    stamper.stop.set()
    stamper.join()
    start = stamper.first(r"\[aitk-local\] starting replica", t0) or t0
    deps = stamper.first(r"pip install done|skipped, the requirements did not change|"
                         r"\[aitk-deps\] .*: (unchanged|installed in)", start)
    runtime = stamper.first(r'"runtime: |runtime: Python', start)
    ready = stamper.first(r"ready: serving", start)
    if None in (deps, runtime, ready, first_token):
        raise RuntimeError("a phase marker is missing from the replica's log:\n" +
                           "\n".join(line for _, line in stamper.lines[-40:]))
    out = {"scheduling": start - t0, "dependencies": deps - start, "imports": runtime - deps,
           "weights": ready - runtime, "first token": first_token - ready, "total": first_token - t0}
    extracted = re.compile(r"extracted from .* \(([\d.]+) MiB\) in ([\d.]+) s")
    for t, line in stamper.lines:
        m = extracted.search(line)
        if t >= start and m:
            out.update({"archive MiB": float(m.group(1)), "extract s": float(m.group(2))})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wakes", type=int, default=2, help="timed wakes per mode (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--disk", type=Path, help="folder for the replicas' local disk (default: in the temp folder); "
                    "e.g. on a loop-mounted ext4 with a journal when the temp folder's is without one (the "
                    "script says so), or /dev/shm to take the disk out of the figures")
    ap.add_argument("--journaled-disk", action="store_true",
                    help="put the replicas' local disk on a 4 GiB ext4 image with a journal, loop-mounted for the run "
                         "(needs root, mkfs.ext4 and a loop device): how a host's disk normally is, where this VM's "
                         "root is ext4 without one")
    args = ap.parse_args()
    if args.journaled_disk:
        if args.disk:
            ap.error("--disk and --journaled-disk contradict each other")
        with journaled_disk() as mount:
            args.disk = mount
            return run(args)
    return run(args)


@contextlib.contextmanager
def journaled_disk(size: int = 4 << 30):
    """A loop-mounted ext4 made by ``mkfs.ext4`` (journal included), removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="aitk-cold-ext4-"))
    image, mount = work / "disk.img", work / "mnt"
    mount.mkdir()
    try:
        with open(image, "wb") as f:
            f.truncate(size)  # sparse
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(f"cold_start.py: cannot make a journaled disk ({exc}); run as root with mkfs.ext4 and a "
                         "loop device, or pass --disk on a journaled filesystem")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:

    from aitk_tui.cloud.clients import ClientFactory
    from aitk_tui.local.server import LocalCloud
    from tests.fixtures_local import TEST_API_KEY, deploy, upload_folder

    tmp = Path(tempfile.mkdtemp(prefix="aitk-cold-start-"))
    os.environ["AITK_LOCAL_BASE_LAYERS"] = str(image_layer(tmp / "image-site"))
    disk = Path(tempfile.mkdtemp(prefix="aitk-cold-disk-", dir=args.disk)) if args.disk else tmp / "disk"
    os.environ["AITK_LOCAL_REPLICA_ENVS"] = str(disk / "envs")  # "before"'s pip runs on the same disk
    os.environ["AITK_LOCAL_REPLICA_DISK"] = str(disk)
    os.environ.setdefault("AITK_TORCH_THREADS", "1")
    project = tmp / "project"
    shutil.copytree(REPO / "infra", project / "infra")
    shutil.copytree(REPO / "inference_server", project / "inference_server",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    cloud = LocalCloud(tmp / "cloud", op_delay_s=0.01, idle_s=1.0).start()
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    try:
        factory = ClientFactory(cloud.endpoints, cloud.credential())
        out = deploy(factory, "rg-cold", project, defaultCommands=PIP_LINE)
        keys = factory.storage(out["SUBSCRIPTION_ID"]).storage_accounts.list_keys(
            "rg-cold", out["STORAGE_ACCOUNT_NAME"]).as_dict()["keys"][0]["value"]
        upload_folder(factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], keys),
                      project / "inference_server", "inference_server")
        app_id = cloud.store.resources(full_type="Microsoft.App/containerApps")[0]["id"]
        # Warm-up wake (not timed): builds the demo model and fills pip's cache on the share.
        os.environ["AITK_LOCAL_DEPS_CACHE"] = "0"
        cloud.replicas.restart(app_id)
        print("warm-up wake (demo model, pip cache)...", file=sys.stderr)
        wake(cloud, app_id, out["ACA_APP_ENDPOINT"], TEST_API_KEY, cloud.ca_bundle)
        for mode, cache in (("before", "0"), ("after", "1")):
            os.environ["AITK_LOCAL_DEPS_CACHE"] = cache
            if mode == "after":  # the template's command; its first start builds and archives the environment
                deploy(factory, "rg-cold", project, defaultCommands=DEPS_STEP)
                print("after: first wake builds the environment and its archive (not timed)...", file=sys.stderr)
                wake(cloud, app_id, out["ACA_APP_ENDPOINT"], TEST_API_KEY, cloud.ca_bundle)
            for i in range(args.wakes):
                print(f"{mode}: wake {i + 1}/{args.wakes}...", file=sys.stderr)
                results[mode].append(wake(cloud, app_id, out["ACA_APP_ENDPOINT"], TEST_API_KEY, cloud.ca_bundle))
    finally:
        cloud.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(disk, ignore_errors=True)

    phases = ["scheduling", "dependencies", "imports", "weights", "first token", "total"]
    med = {m: {p: statistics.median(r[p] for r in rs) for p in phases} for m, rs in results.items()}
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}   wakes per mode: {args.wakes} (median)"
          f"   replicas' local disk: {disk}\n   its filesystem: {filesystem_of(disk.parent)}"
          f"   cores: {len(os.sched_getaffinity(0))}")
    print(f"{'phase':<14}{'before (s)':>12}{'after (s)':>12}")
    for p in phases:
        print(f"{p:<14}{med['before'][p]:>12.2f}{med['after'][p]:>12.2f}")
    after = results["after"]
    if all("extract s" in r for r in after):
        print(f"archive on the share: {statistics.median(r['archive MiB'] for r in after):.1f} MiB, extracted to the "
              f"local disk in {statistics.median(r['extract s'] for r in after):.2f} s (median; the deps step's figures)")
    deps_after = med["after"]["dependencies"]
    print(f"dependency phase: {med['before']['dependencies'] / max(deps_after, 1e-9):.0f}x shorter; "
          f"after {deps_after:.2f} s (goal < {GOAL_DEPS_S:.0f} s: {'met' if deps_after < GOAL_DEPS_S else 'NOT met'})")
    return 0 if deps_after < GOAL_DEPS_S else 1


if __name__ == "__main__":
    sys.exit(main())
