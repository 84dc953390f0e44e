"""Deploy for inference: sync ``inference_server/`` to the file share, restart, wait healthy.

The share root is the project root (mounted at ``/mount``), so ``inference_server/x.py``
lands at ``/mount/inference_server/x.py`` as the container command expects.

Incremental sync: the share holds a manifest (``.aitk/manifest.json``: path -> sha256 and
size) of what the last *complete* deploy left there. Local files are selected (see
:mod:`.sync_plan`: ignore list, links, names), hashed and compared; only new or changed
files are uploaded (in parallel), files deleted locally are deleted, and the new manifest
is written last. Before changing anything the manifest records the intent: entries about
to change lose their hash and every upload is listed as pending, so an interrupted deploy
re-uploads them next time even if the local file is then reverted, and removes them if
the local file is gone. A missing or corrupt manifest means "upload all".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.inference_config import SHARE_KEYS, InferenceConfig
from ..errors import AitkError, register_secret
from ..fsutil import atomic_write_text
from ..events import Done, Event, Failed, Info, UploadProgress
from .models import Deployed, pick
from .sync_plan import DEFAULT_WARN_BYTES, LocalFile, Skipped, format_size, plural, select, skipped_text
from .sync_plan import checked_manifest
from .sdkerrors import describe, failed, is_not_found

if TYPE_CHECKING:
    from .context import OperationContext

MANIFEST_PATH = ".aitk/manifest.json"
HASH_CACHE = "sync-hashes.json"  # local, in the project's .aitk/: skip re-hashing unchanged files
MANIFEST_VERSION = 1
DEFAULT_WORKERS = 8


@dataclass
class SyncPlan:
    upload: list[LocalFile]
    unchanged: int
    remove: list[str]
    manifest_found: bool
    local: dict[str, LocalFile] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    large: list[LocalFile] = field(default_factory=list)
    bad_entries: list[str] = field(default_factory=list)  # manifest paths ignored (not a plain share path)

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.upload)


@dataclass(frozen=True)
class SyncResult:
    uploaded: int
    bytes: int
    unchanged: int
    removed: int
    skipped: tuple[Skipped, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.uploaded or self.removed)

    @property
    def summary(self) -> str:
        # Users grep for this line: keep its shape ("uploaded N files (SIZE), N unchanged, N removed").
        text = (f"uploaded {plural(self.uploaded, 'file')} ({format_size(self.bytes)}), "
                f"{self.unchanged} unchanged, {self.removed} removed")
        return text + (f", {self.skipped_count} skipped" if self.skipped else "")

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)


class Cancelled(Exception):
    """The deploy was cancelled between uploads; the manifest still lists its uploads as pending."""


def _load_hash_cache(path: Path | None) -> dict[str, list[Any]] | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_hash_cache(path: Path | None, cache: dict[str, list[Any]] | None, before: str) -> None:
    if path is None or cache is None:
        return
    text = json.dumps(cache, sort_keys=True)
    if text != before:
        try:
            atomic_write_text(Path(path), text)
        except OSError:
            pass  # only an optimisation


def plan_sync(local: dict[str, LocalFile], manifest: dict[str, dict[str, Any]] | None,
              folder: str = "inference_server") -> SyncPlan:
    """What to upload and remove. A manifest entry without a hash is an upload that was
    announced but never confirmed: uploaded again if the file is still here, else removed."""
    if manifest is None:
        return SyncPlan(list(local.values()), 0, [], False, local)
    upload, unchanged = [], 0
    for rel, f in local.items():
        entry = manifest.get(rel)
        if isinstance(entry, dict) and entry.get("sha256") == f.sha256 and entry.get("size") == f.size:
            unchanged += 1
        else:
            upload.append(f)
    prefix = folder.rstrip("/") + "/"
    remove = sorted(p for p in manifest if p.startswith(prefix) and p not in local)
    return SyncPlan(upload, unchanged, remove, True, local)


# -- share side ----------------------------------------------------------------------------
def read_manifest(share: Any, path: str = MANIFEST_PATH) -> dict[str, dict[str, Any]] | None:
    """The share's manifest ``files`` map; None when missing or unreadable (= upload all)."""
    try:
        data = share.get_file_client(path).download_file().readall()
        doc = json.loads(data)
    except Exception as e:  # noqa: BLE001
        if is_not_found(e) or isinstance(e, (ValueError, UnicodeDecodeError)):
            return None
        raise
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or doc.get("version") != MANIFEST_VERSION:
        return None
    return files


def write_manifest(share: Any, files: dict[str, dict[str, Any]], path: str = MANIFEST_PATH) -> None:
    """Write the manifest; an entry ``{"pending": True}`` records an upload not yet confirmed."""
    doc = {"version": MANIFEST_VERSION, "tool": "aitk", "written_at": int(time.time()), "files": files}
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    _ensure_dirs(share, set(_parents(path)))
    share.get_file_client(path).upload_file(data)


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _ensure_dirs(share: Any, dirs: set[str]) -> None:
    from azure.core.exceptions import ResourceExistsError

    for d in sorted(dirs, key=lambda p: (p.count("/"), p)):
        try:
            share.get_directory_client(d).create_directory()
        except ResourceExistsError:
            pass


def _open_no_follow(f: LocalFile) -> Any:
    # The scan checked every link; O_NOFOLLOW makes sure the file was not swapped for a
    # link (to ~/.ssh/...) between the scan and the upload.
    fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    return os.fdopen(fd, "rb")


def _upload_one(share: Any, f: LocalFile, concurrency: int = 1,
                progress: Callable[[int, int | None], None] | None = None) -> None:
    """One file; the SDK sends it in ranges (``max_range_size``, 4 MiB), ``concurrency`` at a time."""
    client = share.get_file_client(f.rel)
    kw: dict[str, Any] = {"max_concurrency": concurrency} if concurrency > 1 else {}
    if progress is not None:
        kw["progress_hook"] = progress
    try:
        with _open_no_follow(f) as data:
            client.upload_file(data, length=f.size, **kw)
    except Exception as e:  # noqa: BLE001
        if not is_not_found(e):
            raise
        _ensure_dirs(share, set(_parents(f.rel)))  # a folder removed behind our back
        with _open_no_follow(f) as data:
            client.upload_file(data, length=f.size, **kw)


def _delete_one(share: Any, rel: str) -> bool:
    """Delete a file; False when it was not there (a pending upload that never happened)."""
    try:
        share.get_file_client(rel).delete_file()
    except Exception as e:  # noqa: BLE001
        if not is_not_found(e):
            raise
        return False
    return True


def sync_folder(share: Any, root: Path, folder: str = "inference_server", *, workers: int = DEFAULT_WORKERS,
                on_progress: Callable[[UploadProgress], None] | None = None,
                on_plan: Callable[[SyncPlan], None] | None = None,
                cancel: threading.Event | None = None, hash_cache_path: Path | None = None,
                warn_bytes: int | None = DEFAULT_WARN_BYTES, dest: str | None = None,
                manifest_path: str = MANIFEST_PATH, checkpoint_s: float | None = None,
                file_concurrency: int = 1) -> SyncResult:
    """Blocking incremental sync of ``root/folder`` to the share folder ``dest`` (default: ``folder``
    at the share root), recorded in the share's ``manifest_path`` (see module doc).

    ``checkpoint_s``: also record finished uploads in the manifest while uploading (at most
    every ``checkpoint_s`` seconds, and once more when the sync stops early), so that a sync
    killed half-way resends only what was not finished. ``file_concurrency``: ranges of one
    file sent at a time (large files); progress then also reports bytes inside a file.
    """
    cache = _load_hash_cache(hash_cache_path)
    before = json.dumps(cache, sort_keys=True) if cache is not None else ""
    selection = select(root, folder, cache, warn_bytes, dest=dest)  # raises before anything is sent
    _save_hash_cache(hash_cache_path, cache, before)
    manifest, bad_entries = checked_manifest(read_manifest(share, manifest_path))
    plan = plan_sync(selection.files, manifest, dest or folder)
    plan.skipped, plan.large, plan.bad_entries = selection.skipped, selection.large, bad_entries
    if on_plan is not None:
        on_plan(plan)
    skipped = tuple(plan.skipped)
    if not plan.upload and not plan.remove:
        if bad_entries:  # rewritten without them, so that the warning is given once
            write_manifest(share, manifest or {}, manifest_path)
        return SyncResult(0, 0, plan.unchanged, 0, skipped)
    # Record intent before touching anything: entries about to change lose their hash and
    # every upload is listed as pending, so a deploy killed half-way is finished (or its
    # files removed, if they were deleted locally meanwhile) by the next one.
    touched = {f.rel for f in plan.upload} | set(plan.remove)
    intent = {k: v for k, v in (manifest or {}).items() if k not in touched}
    intent.update({f.rel: {"pending": True} for f in plan.upload})
    intent.update({rel: {"pending": True} for rel in plan.remove})
    write_manifest(share, intent, manifest_path)
    known_dirs = {d for rel, v in (manifest or {}).items()
                  if isinstance(v, dict) and v.get("sha256") for d in _parents(rel)}
    _ensure_dirs(share, {d for f in plan.upload for d in _parents(f.rel)} - known_dirs)

    lock = threading.Lock()
    done = {"files": 0, "bytes": 0}
    partial: dict[str, int] = {}  # bytes sent so far of files still uploading
    total_bytes = plan.bytes_total
    confirmed = dict(intent)  # the intent, with each finished upload's hash filled in
    write_lock = threading.Lock()
    last_write = [time.monotonic()]
    # The SDK sends a file in ranges of this size (4 MiB unless the client was told otherwise).
    range_size = int(getattr(getattr(share, "_config", None), "max_range_size", 0) or 4 * 1024 * 1024)

    def checkpoint(force: bool = False) -> None:
        if checkpoint_s is None or not write_lock.acquire(blocking=force):
            return  # another thread is writing: the next finished file writes again
        try:
            if force or time.monotonic() - last_write[0] >= checkpoint_s:
                with lock:
                    snapshot = dict(confirmed)
                write_manifest(share, snapshot, manifest_path)
                last_write[0] = time.monotonic()
        finally:
            write_lock.release()

    def in_file(f: LocalFile) -> Callable[[int, int | None], None]:
        def hook(current: int, _total: int | None) -> None:
            if cancel is not None and cancel.is_set():
                # Stopped (Ctrl-C, Esc): a large file in flight ends at its next range, so the
                # files that did finish are recorded at once, not after this one's last range.
                raise Cancelled()
            if on_progress is None:
                return
            with lock:
                partial[f.rel] = min(int(current), f.size)
                event = UploadProgress(f.rel, done["files"], len(plan.upload),
                                       done["bytes"] + sum(partial.values()), total_bytes, partial=True)
            if current < f.size:
                on_progress(event)
        return hook

    def task(f: LocalFile) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        try:
            if f.size > range_size:  # several ranges: in parallel, and progress inside the file
                _upload_one(share, f, concurrency=file_concurrency,
                            progress=in_file(f) if on_progress is not None or cancel is not None else None)
            else:
                _upload_one(share, f)
        except Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - name the file: "parent path does not exist" alone helps nobody
            raise describe(e, f"upload {f.rel} to file share {getattr(share, 'share_name', '')}".rstrip()) from None
        with lock:
            partial.pop(f.rel, None)
            confirmed[f.rel] = {"sha256": f.sha256, "size": f.size}
            done["files"] += 1
            done["bytes"] += f.size
            event = UploadProgress(f.rel, done["files"], len(plan.upload), done["bytes"] + sum(partial.values()),
                                   total_bytes)
        checkpoint()  # before the event: a file reported done is a file recorded done
        if on_progress is not None:
            on_progress(event)

    # Big files first so that the pool does not end on one long upload.
    ordered = sorted(plan.upload, key=lambda f: -f.size)
    try:
        if workers <= 1:
            for f in ordered:
                task(f)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aitk-upload") as pool:
                futures = [pool.submit(task, f) for f in ordered]
                try:
                    for fut in futures:
                        fut.result()
                except BaseException:
                    if cancel is not None:
                        cancel.set()
                    for fut in futures:
                        fut.cancel()
                    raise
    except BaseException:
        if checkpoint_s is not None:
            try:  # what did finish stays recorded: the next sync resends only the rest
                checkpoint(force=True)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    removed = 0
    for rel in plan.remove:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        removed += _delete_one(share, rel)
    write_manifest(share, {rel: {"sha256": f.sha256, "size": f.size} for rel, f in plan.local.items()},
                   manifest_path)
    return SyncResult(len(plan.upload), total_bytes, plan.unchanged, removed, skipped)


def fetch_storage_key(factory: Any, subscription_id: str, resource_group: str, account: str) -> str:
    try:
        keys = factory.storage(subscription_id).storage_accounts.list_keys(resource_group, account)
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"read the key of storage account {account}") from None
    values = [pick(k, "value") for k in (pick(keys, "keys", default=[]) or [])]
    values = [v for v in values if v]
    if not values:
        raise AitkError(f"Storage account {account} returned no keys.", "shared-key access may be disabled on it")
    for v in values:
        register_secret(str(v))
    return str(values[0])


# -- the whole deploy ------------------------------------------------------------------------
def _latest_revision(session: "OperationContext", config: InferenceConfig) -> str:
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    app = client.container_apps.get(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)
    rev = pick(app, "properties", "latest_revision_name") or pick(app, "properties", "latest_ready_revision_name")
    if not rev:
        raise AitkError(f"Container app {config.ACA_APP_NAME} has no revision to restart yet.",
                        "provisioning may still be running; try again in a minute")
    return str(rev)


def _restart(session: "OperationContext", config: InferenceConfig, revision: str) -> None:
    client = session.factory.container_apps(config.SUBSCRIPTION_ID)
    client.container_apps_revisions.restart_revision(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME, revision)


async def relay_sync(work: Callable[[Callable[[Event], None], threading.Event], Any],
                     out: list[Any]) -> AsyncIterator[Event]:
    """Run ``work(emit, cancel)`` (a blocking sync) in a thread and yield what it emits as it
    comes; its return value is appended to ``out``, its exception raised here. Closed early
    (aclose, task cancel): ``cancel`` is set so no more files start, and the files in flight
    are given up to 30 s to end, so whatever records them (the manifest) stays true."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    cancel = threading.Event()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    job = asyncio.ensure_future(asyncio.to_thread(work, emit, cancel))
    try:
        while not job.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            finished, _ = await asyncio.wait({job, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                yield getter.result()
            else:
                getter.cancel()
        out.append(job.result())
    finally:
        if not job.done():
            cancel.set()
            job.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                await asyncio.wait_for(asyncio.shield(job), timeout=30)
            except BaseException:  # noqa: BLE001 - Cancelled, timeout, or a second cancel
                pass



async def deploy(session: "OperationContext", config: InferenceConfig, *, restart: bool = True, wait: bool = True,
                 health_timeout_s: float | None = None, workers: int = DEFAULT_WORKERS, force_restart: bool = False,
                 warn_bytes: int | None = DEFAULT_WARN_BYTES) -> AsyncIterator[Event]:
    """Sync, then restart and wait for /health. With nothing changed on the share the
    replica is not restarted (it already runs these files) unless ``force_restart``."""
    try:
        config.require(*SHARE_KEYS, *(("ACA_APP_NAME",) if restart else ()), *(("ACA_APP_ENDPOINT",) if wait else ()))
        if not session.project.server_dir.is_dir():
            raise AitkError("The inference_server/ folder is missing.",
                            f"expected {session.project.server_dir}; run `aitk init` to add it")
        key = await session.storage_key(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME,
                                        config.STORAGE_ACCOUNT_NAME)
        share = session.factory.share(config.STORAGE_ACCOUNT_NAME, config.FILE_SHARE_NAME, key)
    except Exception as e:  # noqa: BLE001
        yield failed(e, "prepare the deploy")
        return

    def on_plan(plan: SyncPlan, emit: Callable[[Event], None]) -> None:
        note = "" if plan.manifest_found else " (no manifest on the share yet: uploading everything)"
        emit(Info(f"{len(plan.upload)} to upload, {plan.unchanged} unchanged, {len(plan.remove)} to remove{note}."))
        if plan.skipped:
            emit(Info(f"Skipped {plural(len(plan.skipped), 'item')} (not uploaded): {skipped_text(plan.skipped)}."))
        for f in plan.large:
            emit(Info(f"{f.rel} is {format_size(f.size)}: large files slow every cold start; add it to "
                      f"{folder}/.aitkignore if the server does not need it.", "warning"))
        if plan.bad_entries:
            shown = ", ".join(repr(e) for e in plan.bad_entries[:5]) + (" ..." if len(plan.bad_entries) > 5 else "")
            n = len(plan.bad_entries)
            emit(Info(f"Ignored {n} {'entry' if n == 1 else 'entries'} of the share's manifest that name no plain "
                      f"path ('..' or '\\'): {shown}; the manifest is rewritten without them.", "warning"))

    root = session.project.root
    folder = session.project.server_dir.relative_to(root).as_posix()

    def work(emit: Callable[[Event], None], cancel: threading.Event) -> SyncResult:
        # Cancelled: the files in flight end, and the manifest is left as it is so that the
        # next deploy redoes them.
        return sync_folder(share, root, folder, workers=workers, on_progress=emit,
                           on_plan=lambda plan: on_plan(plan, emit), cancel=cancel,
                           hash_cache_path=session.project.state_dir / HASH_CACHE, warn_bytes=warn_bytes)

    out: list[SyncResult] = []
    try:
        async with aclosing(relay_sync(work, out)) as events:  # closed with us: the sync stops too
            async for event in events:
                yield event
        result = out[0]
    except Exception as e:  # noqa: BLE001
        yield failed(e, f"upload to file share {config.FILE_SHARE_NAME}")
        return

    deployed = Deployed(uploaded=result.uploaded, bytes=result.bytes, unchanged=result.unchanged,
                        removed=result.removed, skipped=tuple(s.rel for s in result.skipped),
                        endpoint=config.endpoint_url)
    yield Info(f"Share {config.FILE_SHARE_NAME}: {result.summary}.")
    summary = result.summary
    if restart and not result.changed and not force_restart:
        restart = False
        summary += "; nothing changed, so the replica was not restarted"
        yield Info("Nothing changed on the share: the replica was not restarted "
                   "(`aitk deploy --restart` restarts it anyway).")
    if restart:
        try:
            revision = await asyncio.to_thread(_latest_revision, session, config)
            restarted_at = time.time()
            await asyncio.to_thread(_restart, session, config, revision)
        except Exception as e:  # noqa: BLE001
            err = describe(e, f"restart container app {config.ACA_APP_NAME}")
            yield Failed(err.message, f"{err.detail + '; ' if err.detail else ''}the files were synced "
                         f"({result.summary}); a replica picks them up when it next starts")
            return
        deployed = dataclasses.replace(deployed, revision=revision, restarted=True)
        yield Info(f"Restarted revision {revision}.")
    if restart and wait:
        from .health import crash_check_s, crash_loop_reason, wait_healthy

        timeout = health_timeout_s if health_timeout_s is not None else session.health_timeout_s
        last = None
        checked = time.monotonic()
        async with aclosing(wait_healthy(session, config.endpoint_url, timeout_s=timeout)) as waits:
            async for event in waits:
                last = event
                yield event
                if event.status != "ok" and time.monotonic() - checked >= crash_check_s(session):
                    checked = time.monotonic()
                    reason = await crash_loop_reason(session, config, since=restarted_at)
                    if reason:  # e.g. the pip step cannot install: waiting longer changes nothing
                        yield Failed(reason, "the files were synced and the revision restarted; fix the cause "
                                     "and deploy again (`aitk logs` shows the replica's output)")
                        return
        if last is None or last.status != "ok":
            budget = f"{timeout / 60:.0f} min" if timeout >= 120 else f"{timeout:.0f} s"
            reason = await crash_loop_reason(session, config, min_restarts=0)
            yield Failed(f"The endpoint did not become healthy within {budget} "
                         f"(last: {last.status if last else 'no answer'}).",
                         f"{reason + ' ' if reason else ''}"
                         f"{last.detail + '; ' if last and last.detail else ''}a GPU replica's cold start "
                         "(image pull, pip install, model load from the share) can take 20 minutes; "
                         "run `aitk logs` to see what the replica is doing")
            return
        deployed = dataclasses.replace(deployed, healthy=True)
    yield Done(summary, result=deployed)
