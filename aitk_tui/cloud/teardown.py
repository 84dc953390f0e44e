"""``aitk down``: delete the container app (stops GPU billing), or everything provisioned.

The default keeps the storage account and share (model, adapter, server files) and the
environment, so a later provision + deploy is quick and uploads nothing. ``all`` deletes the
resources of the provisioning deployment (its ``outputResources``, else the targets of its
operations): never the resource group, never a resource the deployment does not name.
Children go with their parent (a share with its account, an environment storage with its
environment) and dependants first (the app before its environment). ``infra/inference.config.json``
is left as it is: the names in it stay true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..config.inference_config import APP_KEYS, InferenceConfig
from ..events import Done, Event, Info, ResourceProgress
from .clients import ClientFactory
from .models import pick
from .provision import DEPLOYMENT_NAME
from .sdkerrors import InputError, failed, failed_event, is_not_found

CONTAINER_APPS = "Microsoft.App/containerApps"
# Deletion order by type (lower first): what depends on a resource goes before it.
_ORDER = {"microsoft.app/containerapps": 0, "microsoft.app/managedenvironments": 1,
          "microsoft.operationalinsights/workspaces": 2, "microsoft.storage/storageaccounts": 3}
# api-version per type when the template does not say (the versions the template uses).
_API_VERSIONS = {"microsoft.app/containerapps": "2024-03-01", "microsoft.app/managedenvironments": "2024-03-01",
                 "microsoft.app/managedenvironments/storages": "2024-03-01",
                 "microsoft.operationalinsights/workspaces": "2022-10-01",
                 "microsoft.storage/storageaccounts": "2023-01-01",
                 "microsoft.storage/storageaccounts/fileservices/shares": "2023-01-01"}


@dataclass(frozen=True)
class Target:
    id: str
    type: str  # e.g. Microsoft.App/containerApps
    name: str  # e.g. "acct/default/share" for a child

    @staticmethod
    def from_id(resource_id: str) -> "Target":
        parts = resource_id.strip("/").split("/")
        i = next(k for k, p in enumerate(parts) if p.lower() == "providers")
        rest = parts[i + 1:]
        ns, pairs = rest[0], rest[1:]
        return Target(resource_id, "/".join([ns, *pairs[0::2]]), "/".join(pairs[1::2]))


@dataclass(frozen=True)
class TeardownPlan:
    resource_group: str
    delete: tuple[Target, ...]  # in deletion order
    with_parent: tuple[Target, ...]  # children that go with a deleted parent
    keep_note: str


@dataclass(frozen=True)
class TornDown:
    resource_group: str
    deleted: tuple[Target, ...]
    already_gone: tuple[Target, ...]


def _is_under(child: Target, parent: Target) -> bool:
    return child.id.lower().startswith(parent.id.lower().rstrip("/") + "/")


def _deployment_targets(factory: ClientFactory, config: InferenceConfig) -> list[str]:
    client = factory.deployments(config.SUBSCRIPTION_ID)
    try:
        deployment = client.deployments.get(config.RESOURCE_GROUP_NAME, DEPLOYMENT_NAME)
    except Exception as e:  # noqa: BLE001
        if is_not_found(e):
            raise InputError(f"There is no provisioning deployment {DEPLOYMENT_NAME} in {config.RESOURCE_GROUP_NAME}, "
                             "so aitk cannot tell which resources it created.",
                             "nothing was deleted; `aitk down` without --all deletes the container app only") from None
        raise
    ids = [str(pick(r, "id")) for r in pick(deployment, "properties", "output_resources", default=[]) or []
           if pick(r, "id")]
    if not ids:
        for op in client.deployment_operations.list(config.RESOURCE_GROUP_NAME, DEPLOYMENT_NAME):
            rid = pick(op, "properties", "target_resource", "id")
            if rid and str(pick(op, "properties", "provisioning_operation", default="")).lower() == "create":
                ids.append(str(rid))
    group_prefix = f"/subscriptions/{config.SUBSCRIPTION_ID}/resourcegroups/{config.RESOURCE_GROUP_NAME}/providers/"
    # Only resources inside this group (a template could name others; they are not ours to delete).
    return list(dict.fromkeys(i for i in ids if i.lower().startswith(group_prefix.lower())))


def _plan_sync(factory: ClientFactory, config: InferenceConfig, everything: bool) -> TeardownPlan:
    app_id = (f"/subscriptions/{config.SUBSCRIPTION_ID}/resourceGroups/{config.RESOURCE_GROUP_NAME}"
              f"/providers/{CONTAINER_APPS}/{config.ACA_APP_NAME}")
    if not everything:
        return TeardownPlan(config.RESOURCE_GROUP_NAME, (Target.from_id(app_id),), (),
                            "kept: the storage account and share (model, adapter, server files), the environment "
                            "and the log workspace")
    targets = [Target.from_id(i) for i in _deployment_targets(factory, config)]
    shared = _named_by_other_deployments(factory, config)
    # A resource another deployment also declares (AI Toolkit's fine-tuning deployment declares
    # the same storage account, share and environment) is not this deployment's alone: keep it,
    # with everything under it, or `down --all` would delete the fine-tuned model's share.
    kept = [t for t in targets if t.id.lower() in shared]
    targets = [t for t in targets if not any(t == k or _is_under(t, k) for k in kept)]
    # The file service "default" cannot be deleted on its own; it goes with its account.
    top = [t for t in targets if not any(_is_under(t, p) for p in targets if p is not t)]
    children = [t for t in targets if t not in top]
    top.sort(key=lambda t: (_ORDER.get(t.type.lower(), 1), t.type.lower(), t.name))
    note = (f"kept: the resource group {config.RESOURCE_GROUP_NAME} and anything in it this "
            "deployment did not create")
    if kept:
        note += "; also kept, because another deployment declares them too: " + ", ".join(
            f"{t.type.split('/')[-1]} {t.name} ({shared[t.id.lower()]})" for t in kept)
    return TeardownPlan(config.RESOURCE_GROUP_NAME, tuple(top), tuple(children), note)


def _named_by_other_deployments(factory: ClientFactory, config: InferenceConfig) -> dict[str, str]:
    """Resource id (lower case) -> the name of another deployment in the group that declares it."""
    client = factory.deployments(config.SUBSCRIPTION_ID)
    named: dict[str, str] = {}
    for d in client.deployments.list_by_resource_group(config.RESOURCE_GROUP_NAME):
        name = str(pick(d, "name", default=""))
        if name == DEPLOYMENT_NAME:
            continue
        for r in pick(d, "properties", "output_resources", default=[]) or []:
            if pick(r, "id"):
                named.setdefault(str(pick(r, "id")).lower(), name)
    return named


async def plan(factory: ClientFactory, config: InferenceConfig, *, everything: bool = False) -> TeardownPlan:
    """What ``down`` would delete (nothing is changed)."""
    config.require(*APP_KEYS)
    return await asyncio.to_thread(_plan_sync, factory, config, everything)


def _api_versions(template: dict[str, Any] | None) -> dict[str, str]:
    versions = dict(_API_VERSIONS)
    for r in (template or {}).get("resources") or []:
        if isinstance(r, dict) and r.get("type") and r.get("apiVersion"):
            versions[str(r["type"]).lower()] = str(r["apiVersion"])
    return versions


def _delete_sync(factory: ClientFactory, subscription_id: str, target: Target, api_version: str) -> bool:
    """Delete one resource and wait; False when it was already gone."""
    client = factory.resources(subscription_id)
    try:
        client.resources.get_by_id(target.id, api_version=api_version)
    except Exception as e:  # noqa: BLE001
        if is_not_found(e):
            return False
        raise
    client.resources.begin_delete_by_id(target.id, api_version=api_version).result()
    return True


async def down(factory: ClientFactory, config: InferenceConfig, teardown: TeardownPlan,
               template: dict[str, Any] | None = None) -> AsyncIterator[Event]:
    """Delete what ``teardown`` lists, in order: ResourceProgress per resource (Deleting, then
    Deleted or AlreadyGone), then Done(result=TornDown); Failed at the first refusal
    (what was deleted until then stays deleted)."""
    versions = _api_versions(template)
    start = time.monotonic()
    deleted: list[Target] = []
    gone: list[Target] = []
    if not teardown.delete:
        yield failed_event(InputError("The provisioning deployment names no resource in the group; nothing was "
                                      "deleted."))
        return
    for target in teardown.delete:
        yield ResourceProgress(target.type, target.name, "Deleting", round(time.monotonic() - start, 1))
        try:
            existed = await asyncio.to_thread(_delete_sync, factory, config.SUBSCRIPTION_ID, target,
                                              versions.get(target.type.lower(), "2024-03-01"))
        except Exception as e:  # noqa: BLE001
            yield failed(e, f"delete {target.type} {target.name}")
            return
        (deleted if existed else gone).append(target)
        yield ResourceProgress(target.type, target.name, "Deleted" if existed else "AlreadyGone",
                               round(time.monotonic() - start, 1))
    if any(t.type.lower() == CONTAINER_APPS.lower() for t in teardown.delete):
        yield Info("GPU billing of the app stopped; infra/inference.config.json was kept (the names in it are still "
                   "true): `aitk provision` brings the app back.")
    result = TornDown(teardown.resource_group, tuple(deleted), tuple(gone))
    what = ", ".join(f"{t.type.split('/')[-1]} {t.name}" for t in deleted) or "nothing (already gone)"
    yield Done(f"Deleted {what} in {teardown.resource_group}; {teardown.keep_note}.", result=result)
