"""``aitk models upload | list``: a locally trained LoRA adapter (and base model) onto the share.

The share root is the project root mounted at ``/mount`` (AI Toolkit's layout): fine-tuning
leaves the base model under ``model-cache/`` and adapters under ``models/``, and so does this.

- adapter: ``models/<NAME>/adapter`` (``NAME`` is ``--name``, else ``default``), the ``.../adapter``
  ending AI Toolkit's fine-tuning job checks for (``find models/ | grep adapter/adapter``);
- base model: ``model-cache/<org>/<model>`` when its ``config.json`` names a hub id (as AI
  Toolkit's ``huggingface-cli download`` lays it out, so the template's default ``modelPath``
  finds Phi-3 there), else ``model-cache/<folder name>``.

The copy is deploy's sync (:func:`.deploy.sync_folder`): the same selection rules (ignore
list, no links out of the folder, names Azure Files accepts), a manifest of hashes so only
what changed is sent, intent recorded before anything is sent. Each destination has its own
manifest (``.aitk/manifests/<dest>.json``); finished files are recorded while uploading, so
a killed upload resends only what had not finished. Large files go in ranges, several at
a time (the SDK's ``max_concurrency``).

Then the parameters file is updated (atomically, unknown keys kept) so that the next
provision serves what was uploaded: ``adapterPath`` (or, with ``--name``, the ``adapters``
list's ``NAME=PATH`` entry) and ``modelPath`` with ``--model``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..config.inference_config import SHARE_KEYS, InferenceConfig
from ..config.share_names import component_problem
from ..errors import AitkError
from ..events import Done, Event, Failed, Info
from .sdkerrors import InputError, describe, failed, failed_event, is_not_found
from .sync_plan import format_size, plural, skipped_text

if TYPE_CHECKING:
    from ..config.parameters import ParametersDocument
    from .deploy import SyncPlan, SyncResult
    from .context import OperationContext

MOUNT = "/mount"
ADAPTERS_DIR = "models"
MODELS_DIR = "model-cache"
DEFAULT_NAME = "default"
DEFAULT_ADAPTER_NAME = "adapter"  # the template's adapterName: the model id of its single adapterPath
MANIFESTS_DIR = ".aitk/manifests"
HASH_CACHES_DIR = "upload-hashes"  # in the project's .aitk/: skip re-hashing gigabytes that did not change
FILE_WORKERS = 4
RANGE_CONCURRENCY = 4  # ranges of one large file in flight at a time
CHECKPOINT_S = 2.0
# The served model id (the server's NAME=PATH rule) and a folder name Azure Files accepts:
# the server also allows ':', which no share path may hold.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def _folder(path: Path, marker: str, what: str, option: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"The {what} folder {path} does not exist.")
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not a {what} folder.")
    if not (path / marker).is_file():
        raise ValueError(f"{path} is not a {what} folder: it has no {marker} ({option} needs the folder that "
                         f"holds {marker}).")
    return path.resolve()


class UploadRequest(BaseModel):
    """What ``aitk models upload`` was asked for, checked before anything is read or sent."""

    model_config = ConfigDict(frozen=True)

    adapter: Path
    name: str | None = None
    model: Path | None = None

    @field_validator("adapter")
    @classmethod
    def _adapter(cls, v: Path) -> Path:
        return _folder(v, "adapter_config.json", "LoRA adapter", "--adapter")

    @field_validator("model")
    @classmethod
    def _model(cls, v: Path | None) -> Path | None:
        return None if v is None else _folder(v, "config.json", "model", "--model")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _NAME.fullmatch(v) or component_problem(v):
            raise ValueError(f"The adapter name {v!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit (it becomes the model id and a folder on the share).")
        return v

    @classmethod
    def checked(cls, adapter: Path, name: str | None = None, model: Path | None = None) -> "UploadRequest":
        try:
            return cls(adapter=adapter, name=name, model=model)
        except ValidationError as e:
            first = e.errors()[0]
            message = str(first.get("ctx", {}).get("error") or first["msg"]).removeprefix("Value error, ")
            raise InputError(message, "nothing was uploaded") from None

    @property
    def adapter_dest(self) -> str:
        return f"{ADAPTERS_DIR}/{self.name or DEFAULT_NAME}/adapter"

    @property
    def model_dest(self) -> str | None:
        return None if self.model is None else f"{MODELS_DIR}/{model_folder_name(self.model)}"


def model_folder_name(model_dir: Path) -> str:
    """``microsoft/Phi-3-mini-4k-instruct`` when config.json names a hub id, else the folder's name."""
    import json

    try:
        named = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError, RecursionError):
        named = None
    if isinstance(named, str) and _HUB_ID.fullmatch(named) and not any(component_problem(p) for p in named.split("/")):
        return named
    name = model_dir.name
    why = component_problem(name)
    if why:
        raise InputError(f"The model folder's name {name!r} cannot be a folder on the share: {why}.",
                         "rename the folder; nothing was uploaded")
    return name


def manifest_path(dest: str) -> str:
    return f"{MANIFESTS_DIR}/{dest}.json"


def mount_path(dest: str) -> str:
    return f"{MOUNT}/{dest}"


@dataclass(frozen=True)
class ParamChange:
    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class FolderUploaded:
    kind: str  # "adapter" or "model"
    local: Path
    dest: str  # share path, e.g. models/sql/adapter
    result: "SyncResult"


@dataclass(frozen=True)
class ModelsUploaded:
    """The typed result of an upload (``Done.result``)."""

    folders: tuple[FolderUploaded, ...]
    params: tuple[ParamChange, ...] = ()

    @property
    def files_uploaded(self) -> int:
        return sum(f.result.uploaded for f in self.folders)


@dataclass(frozen=True)
class ShareModel:
    """One adapter or base model found on the share."""

    kind: str  # "adapter" or "model"
    path: str  # share path of the folder (holds adapter_config.json / config.json)
    files: int
    bytes: int
    modified: datetime | None = None

    @property
    def mount_path(self) -> str:
        return mount_path(self.path)


# -- parameters ---------------------------------------------------------------------------------
def _load_parameters(session: "OperationContext") -> "ParametersDocument":
    from ..config.parameters import ParametersDocument

    return ParametersDocument.load(session.project.parameters_path)


def apply_parameters(doc: "ParametersDocument", request: UploadRequest) -> tuple[ParamChange, ...]:
    """Point the parameters at what was uploaded; returns what changed (nothing is saved here)."""
    changes: list[ParamChange] = []

    def put(name: str, value: Any) -> None:
        before = doc.get(name)
        if before != value:
            doc.set(name, value)
            changes.append(ParamChange(name, before, value))

    adapter = mount_path(request.adapter_dest)
    if request.name is None:
        put("adapterPath", adapter)
    else:
        entries = [e for e in (doc.get("adapters") or []) if isinstance(e, str)]
        single = doc.get("adapterPath")
        if not entries and isinstance(single, str) and single.strip():
            # The endpoint serves its single adapter (adapterPath, as adapterName) until the list
            # has entries, and then serves only the list: carry that adapter in first, so a named
            # upload adds a model (and the old one stays the default) instead of replacing it.
            entries = [f"{doc.get('adapterName') or DEFAULT_ADAPTER_NAME}={single.strip()}"]
        entry = f"{request.name}={adapter}"
        kept = [e for e in entries if e.partition("=")[0].strip() != request.name]
        # Its place in the list is kept: the first adapter is the endpoint's default model.
        at = next((i for i, e in enumerate(entries) if e.partition("=")[0].strip() == request.name), len(kept))
        put("adapters", kept[:at] + [entry] + kept[at:])
    if request.model_dest is not None:
        put("modelPath", mount_path(request.model_dest))
    return tuple(changes)


def _missing_base(session: "OperationContext", share: Any) -> str | None:
    """The ``/mount`` path of the base model the parameters name (``modelPath``, else the
    template's default) when the share has no ``config.json`` there; None when it has, or
    when that cannot be told (a path off the share, an unreadable parameters file, a local
    cloud started with ``--model``, which serves that model whatever the share holds)."""
    if session.served_model:
        return None
    try:
        model_path = _load_parameters(session).effective("modelPath")
    except AitkError:
        return None
    if not isinstance(model_path, str) or not model_path.startswith(MOUNT + "/"):
        return None
    rel = "/".join(p for p in model_path[len(MOUNT):].split("/") if p)
    if not rel or any(component_problem(part) for part in rel.split("/")):
        return None
    try:
        share.get_file_client(f"{rel}/config.json").get_file_properties()
    except Exception as e:  # noqa: BLE001
        if is_not_found(e):
            return model_path.rstrip("/")
        raise
    return None


def _show(value: Any) -> str:
    import json

    return "null" if value is None else value if isinstance(value, str) else json.dumps(value)


# -- upload ---------------------------------------------------------------------------------------
async def upload(session: "OperationContext", config: InferenceConfig, request: UploadRequest, *,
                 workers: int = FILE_WORKERS, file_concurrency: int = RANGE_CONCURRENCY,
                 checkpoint_s: float | None = CHECKPOINT_S, set_parameters: bool = True,
                 share_options: dict[str, Any] | None = None) -> AsyncIterator[Event]:
    """Copy the adapter (and base model) to the share, then set the parameters.

    Info, UploadProgress..., then Done(result=ModelsUploaded); Failed on the first
    error (what finished uploading stays recorded: running it again sends only the rest).
    Cancelling (aclose) starts no more files and records those that finished."""
    try:
        config.require(*SHARE_KEYS)
        model_dest = request.model_dest  # a folder name the share refuses: before any upload
        if set_parameters:
            _load_parameters(session)  # a broken parameters file: say so before sending gigabytes
        key = await session.storage_key(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME,
                                        config.STORAGE_ACCOUNT_NAME)
        share = session.factory.share(config.STORAGE_ACCOUNT_NAME, config.FILE_SHARE_NAME, key,
                                      **(share_options or {}))
        if request.model is None:  # an adapter alone is served only on a base the share already holds
            missing = await asyncio.to_thread(_missing_base, session, share)
            if missing is not None:
                raise InputError(f"The share has no base model at {missing}, so the adapter would not be served; "
                                 "nothing was uploaded.",
                                 "upload its base too: aitk models upload --adapter DIR --model BASE_DIR; or, if "
                                 "the base is elsewhere on the share, aitk params set modelPath=/mount/PATH first")
    except AitkError as e:
        yield failed_event(e)  # a file to fix is a usage problem (the CLI exits 2), like a bad folder
        return
    except Exception as e:  # noqa: BLE001
        yield failed(e, "prepare the upload")
        return

    jobs = [("adapter", request.adapter, request.adapter_dest)]
    if request.model is not None and model_dest is not None:
        jobs.insert(0, ("model", request.model, model_dest))  # the base first: the adapter needs it
    done: list[FolderUploaded] = []
    for kind, local, dest in jobs:
        yield Info(f"{'Base model' if kind == 'model' else 'Adapter'} {local} -> {config.FILE_SHARE_NAME}/{dest}")
        result: SyncResult | None = None
        # aclosing: when this generator is closed (Esc, Ctrl-C), the folder's sync is stopped and
        # records what finished now, not whenever the garbage collector gets to it.
        async with contextlib.aclosing(_sync(session, share, local, dest, workers=workers,
                                             file_concurrency=file_concurrency, checkpoint_s=checkpoint_s)) as events:
            async for event in events:
                if isinstance(event, Done):
                    result = event.result
                    continue
                yield event
                if isinstance(event, Failed):
                    return
        assert result is not None
        yield Info(f"{config.FILE_SHARE_NAME}/{dest}: {result.summary}.")
        done.append(FolderUploaded(kind, local, dest, result))

    changes: tuple[ParamChange, ...] = ()
    if set_parameters:
        try:
            doc = _load_parameters(session)
            changes = apply_parameters(doc, request)
            if changes:
                doc.save()
        except AitkError as e:
            adapter = mount_path(request.adapter_dest)
            by_hand = [f"adapterPath={adapter}" if request.name is None else f"'adapters=[\"{request.name}={adapter}\"]'"]
            by_hand += [f"modelPath={mount_path(model_dest)}"] if model_dest else []
            yield Failed(f"The files were uploaded, but the parameters file was not updated: {e.message}",
                         f"{e.detail + '; ' if e.detail else ''}fix it, then run `aitk models upload` again "
                         f"(nothing is re-sent) or `aitk params set {' '.join(by_hand)}`",
                         config_error=True)
            return
        for c in changes:
            yield Info(f"Parameter {c.name}: {_show(c.before)} -> {_show(c.after)}")
        if request.name is not None and any(c.name == "adapters" for c in changes):
            yield Info("With an adapters list, the endpoint serves those adapters (adapterPath is not used).")
    result = ModelsUploaded(tuple(done), changes)
    sent = sum(f.result.uploaded for f in done)
    size = sum(f.result.bytes for f in done)
    params_text = (f"; parameters changed: {', '.join(c.name for c in changes)} (provision to serve them)"
                   if changes else "; parameters already point there" if set_parameters else "")
    yield Done(f"Uploaded {plural(sent, 'file')} ({format_size(size)}) to {config.FILE_SHARE_NAME}"
               f"{params_text}.", result=result)


async def _sync(session: "OperationContext", share: Any, local: Path, dest: str, *, workers: int,
                file_concurrency: int, checkpoint_s: float | None) -> AsyncIterator[Event]:
    """One folder through deploy's sync in a thread, its events relayed; Done(result=SyncResult)."""
    from . import deploy as _deploy

    def on_plan(plan: "SyncPlan", emit: Callable[[Event], None]) -> None:
        note = "" if plan.manifest_found else " (nothing recorded there yet: uploading everything)"
        emit(Info(f"{len(plan.upload)} to upload ({format_size(plan.bytes_total)}), {plan.unchanged} unchanged, "
                  f"{len(plan.remove)} to remove{note}."))
        if plan.skipped:
            emit(Info(f"Skipped {plural(len(plan.skipped), 'item')} (not uploaded): "
                      f"{skipped_text(plan.skipped)}."))

    cache = session.project.state_dir / HASH_CACHES_DIR / (re.sub(r"[^A-Za-z0-9._-]", "_", dest) + ".json")

    def work(emit: Callable[[Event], None], cancel: threading.Event) -> Any:
        # Cancelled: no more files start; the sync records those that finished.
        return _deploy.sync_folder(share, local.parent, local.name, workers=workers, on_progress=emit,
                                   on_plan=lambda plan: on_plan(plan, emit), cancel=cancel, hash_cache_path=cache,
                                   warn_bytes=None, dest=dest, manifest_path=manifest_path(dest),
                                   checkpoint_s=checkpoint_s, file_concurrency=file_concurrency)

    out: list[Any] = []
    try:
        async with aclosing(_deploy.relay_sync(work, out)) as events:
            async for event in events:
                yield event
        result = out[0]
    except AitkError as e:
        yield failed_event(e)
        return
    except Exception as e:  # noqa: BLE001
        yield failed(e, f"upload {local} to {dest}")
        return
    yield Done(result.summary, result=result)


# -- list -------------------------------------------------------------------------------------------
def _walk(share: Any, top: str, max_depth: int = 8) -> list[tuple[str, list[Any]]]:
    """(folder, its files) for ``top`` and the folders under it, at most ``max_depth`` deep."""
    out: list[tuple[str, list[Any]]] = []
    pending = [(top, 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            items = list(share.get_directory_client(folder).list_directories_and_files(include=["timestamps"]))
        except Exception as e:  # noqa: BLE001
            if is_not_found(e):
                continue
            raise
        files = [i for i in items if not i.get("is_directory")]
        out.append((folder, files))
        if depth < max_depth:
            pending += [(f"{folder}/{i['name']}", depth + 1) for i in items if i.get("is_directory")]
    return out


def _modified(item: Any) -> datetime | None:
    for key in ("last_modified", "last_write_time"):  # the SDK gives a datetime, or ISO text with 7 digits
        value = item.get(key)
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00")))
            except ValueError:
                continue
    return None


def list_share(share: Any) -> list[ShareModel]:
    """Every folder under ``models/`` holding ``adapter_config.json`` and under ``model-cache/``
    holding ``config.json``, with everything beneath it counted (files, bytes, newest change)."""
    found: list[ShareModel] = []
    for top, marker, kind in ((MODELS_DIR, "config.json", "model"), (ADAPTERS_DIR, "adapter_config.json", "adapter")):
        tree = _walk(share, top)
        roots = sorted(folder for folder, files in tree if any(f["name"] == marker for f in files))
        # A model folder holding a nested one (a checkpoint beside the model) is one entry.
        roots = [r for r in roots if not any(r.startswith(o + "/") for o in roots if o != r)]
        for root in roots:
            files = [f for folder, fs in tree if folder == root or folder.startswith(root + "/") for f in fs]
            times = [t for t in (_modified(f) for f in files) if t is not None]
            found.append(ShareModel(kind, root, len(files), sum(int(f.get("size") or 0) for f in files),
                                    max(times) if times else None))
    return found


async def list_models(session: "OperationContext", config: InferenceConfig) -> list[ShareModel]:
    """What the share holds under ``model-cache/`` and ``models/`` (raises AitkError)."""
    config.require(*SHARE_KEYS)
    key = await session.storage_key(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME, config.STORAGE_ACCOUNT_NAME)
    share = session.factory.share(config.STORAGE_ACCOUNT_NAME, config.FILE_SHARE_NAME, key)
    try:
        return await asyncio.to_thread(list_share, share)
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"list file share {config.FILE_SHARE_NAME}") from None
