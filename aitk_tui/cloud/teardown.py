"""``aitk down``: delete the container app (stops GPU billing), or everything provisioned.

The default keeps the storage account and share (model, adapter, server files) and the
environment, so a later provision + deploy is quick and uploads nothing. ``all`` deletes the
resources of this project's provisioning deployment (its ``outputResources``, else the
targets of its operations): never the resource group, never a resource the deployment does
not name, never one another deployment declares or another aitk project's tag names, and
nothing at all when the deployment and ``inference.config.json`` name different resources
(see :mod:`.ownership` for how the deployment is found). The app alone is deleted only when
it is confirmed as this project's (its tag, or a deployment's outputs).
Children go with their parent (a share with its account, an environment storage with its
environment) and dependants first (the app before its environment). ``infra/inference.config.json``
is left as it is: the names in it stay true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config.inference_config import APP_KEYS, SHARE_KEYS, InferenceConfig
from ..events import Done, Event, Info, ResourceProgress
from .clients import ClientFactory
from .models import enum_text, pick
from . import ownership
from .sdkerrors import InputError, failed, failed_event, is_not_found

if TYPE_CHECKING:
    from ..project import Project

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


def _deployment_ids(client: Any, group: str, deployment: Any) -> list[str]:
    name = str(pick(deployment, "name"))
    ids = [str(pick(r, "id")) for r in pick(deployment, "properties", "output_resources", default=[]) or []
           if pick(r, "id")]
    if not ids:
        for op in client.deployment_operations.list(group, name):
            rid = pick(op, "properties", "target_resource", "id")
            if rid and str(pick(op, "properties", "provisioning_operation", default="")).lower() == "create":
                ids.append(str(rid))
    return ids


@dataclass(frozen=True)
class _Ours:
    """This project's provisioning deployment(s) in the group, and every other deployment there."""
    mine: tuple[Any, ...]
    others: tuple[Any, ...]
    project_id: str | None


def _find_ours(client: Any, config: InferenceConfig, project_id: str | None) -> _Ours:
    """This project's record: ``aitk-inference-<id>`` (the id from .aitk/state.json, else the one
    deployment of that form whose outputs name what inference.config.json names), and the
    shared record ``aitk-inference`` of a project provisioned before ids existed, while its
    outputs agree with the config. Raises InputError when the project's own record names other
    resources than the config does, or when the only record belongs to another project."""
    group = config.RESOURCE_GROUP_NAME
    listed = list(client.deployments.list_by_resource_group(group))
    by_name = {str(pick(d, "name", default="")): d for d in listed}
    project_id = project_id or ownership.adopt_project_id(listed, config)
    own = by_name.get(ownership.deployment_name(project_id)) if project_id else None
    legacy = by_name.get(ownership.LEGACY_DEPLOYMENT_NAME)
    mine: list[Any] = []
    if own is not None:
        differ = ownership.disagreements(own, config)
        state = enum_text(pick(own, "properties", "provisioning_state")) or "unknown"
        if differ and ownership.output(own, "ACA_APP_NAME") is None:
            raise InputError(f"This project's deployment {pick(own, 'name')} has no outputs (its state is {state}), "
                             "so aitk cannot check which resources are this project's; nothing was deleted.",
                             "wait for it to finish, or provision again, then run down again")
        if differ:
            raise InputError(f"This project's deployment {pick(own, 'name')} and infra/inference.config.json name "
                             "different resources, so aitk cannot tell which are this project's; nothing was deleted.",
                             "; ".join(differ) + "; fix inference.config.json, or provision again to rewrite it")
        mine.append(own)
    if legacy is not None:
        differ = ownership.disagreements(legacy, config)
        if not differ:
            mine.append(legacy)  # provisioned before deployments were named per project
        elif own is None:
            raise InputError(f"The deployment {ownership.LEGACY_DEPLOYMENT_NAME} in {group} names other resources than "
                             "infra/inference.config.json: another project provisioned into this group after this "
                             "one, so aitk cannot tell which resources are this project's; nothing was deleted.",
                             "; ".join(differ) + "; delete this project's resources in the portal, or provision "
                             "again (the deployment is then named after this project)")
    if not mine:
        raise InputError(f"There is no provisioning deployment of this project in {group}, so aitk cannot tell "
                         "which resources it created.",
                         "nothing was deleted; `aitk down` without --all deletes the container app only")
    return _Ours(tuple(mine), tuple(d for d in listed if all(d is not m for m in mine)), project_id)


def _tags(factory: ClientFactory, config: InferenceConfig) -> dict[str, dict[str, str]]:
    """Resource id (lower case) -> its tags, for every resource in the group."""
    out = {}
    for r in factory.resources(config.SUBSCRIPTION_ID).resources.list_by_resource_group(config.RESOURCE_GROUP_NAME):
        out[str(pick(r, "id", default="")).lower()] = dict(pick(r, "tags", default=None) or {})
    return out


def _other_project(tags: dict[str, str], project_id: str | None) -> str | None:
    """The other aitk project named by a resource's tag, if any."""
    owner = next((v for k, v in tags.items() if k.lower() == ownership.PROJECT_TAG), None)
    return owner if owner and owner != project_id else None


def _config_names(config: InferenceConfig) -> dict[str, str]:
    """Type (lower case) -> the name inference.config.json gives a resource of that type."""
    return {CONTAINER_APPS.lower(): str(config.ACA_APP_NAME or ""),
            "microsoft.storage/storageaccounts": str(config.STORAGE_ACCOUNT_NAME or ""),
            "microsoft.storage/storageaccounts/fileservices/shares":
                f"{config.STORAGE_ACCOUNT_NAME}/default/{config.FILE_SHARE_NAME}"}


def _confirm_app(factory: ClientFactory, config: InferenceConfig, project_id: str | None) -> None:
    """The app inference.config.json names is this project's: tagged with its id, or (an app
    provisioned before tags, or by AI Toolkit) untagged and declared by a deployment in the group
    that is not another aitk project's. Raises InputError otherwise; an app that is gone passes."""
    app_id = _app_id(config).lower()
    tags = _tags(factory, config)
    if app_id not in tags:
        return  # already gone: the delete says so
    client = factory.deployments(config.SUBSCRIPTION_ID)
    listed = list(client.deployments.list_by_resource_group(config.RESOURCE_GROUP_NAME))
    project_id = project_id or ownership.adopt_project_id(listed, config)  # a clone without .aitk/
    other = _other_project(tags[app_id], project_id)
    if other:
        raise InputError(f"Container app {config.ACA_APP_NAME} belongs to another aitk project ({other}), not this one; "
                         "nothing was deleted.", "inference.config.json names an app this project did not create")
    if tags[app_id].get(ownership.PROJECT_TAG) == project_id and project_id:
        return
    for d in listed:
        name = str(pick(d, "name", default=""))
        if name.startswith(ownership.DEPLOYMENT_PREFIX) and name != ownership.deployment_name(project_id or ""):
            continue  # another aitk project's record
        if str(ownership.output(d, "ACA_APP_NAME") or "").lower() == str(config.ACA_APP_NAME).lower():
            return
    raise InputError(f"No deployment in {config.RESOURCE_GROUP_NAME} says container app {config.ACA_APP_NAME} is "
                     "this project's, and it has no aitk-project tag of this project; nothing was deleted.",
                     "if it is yours, delete it in the portal or with `az containerapp delete`")


def _app_id(config: InferenceConfig) -> str:
    return (f"/subscriptions/{config.SUBSCRIPTION_ID}/resourceGroups/{config.RESOURCE_GROUP_NAME}"
            f"/providers/{CONTAINER_APPS}/{config.ACA_APP_NAME}")


def _plan_sync(factory: ClientFactory, config: InferenceConfig, everything: bool,
               project_id: str | None) -> TeardownPlan:
    if not everything:
        _confirm_app(factory, config, project_id)
        return TeardownPlan(config.RESOURCE_GROUP_NAME, (Target.from_id(_app_id(config)),), (),
                            "kept: the storage account and share (model, adapter, server files), the environment "
                            "and the log workspace")
    client = factory.deployments(config.SUBSCRIPTION_ID)
    ours = _find_ours(client, config, project_id)
    group_prefix = f"/subscriptions/{config.SUBSCRIPTION_ID}/resourcegroups/{config.RESOURCE_GROUP_NAME}/providers/"
    ids = [i for d in ours.mine for i in _deployment_ids(client, config.RESOURCE_GROUP_NAME, d)]
    # Only resources inside this group (a template could name others; they are not ours to delete).
    targets = [Target.from_id(i) for i in dict.fromkeys(i for i in ids if i.lower().startswith(group_prefix.lower()))]
    # What the config names, the deployment must name the same: an app, account or share of
    # another name is not the one this project uses.
    expected = _config_names(config)
    stray = [t for t in targets if t.type.lower() in expected and t.name.lower() != expected[t.type.lower()].lower()]
    if stray:
        raise InputError("This project's deployment created resources infra/inference.config.json does not name, "
                         "so aitk cannot tell which are this project's; nothing was deleted.",
                         ", ".join(f"{t.type.split('/')[-1]} {t.name}" for t in stray))
    shared = _named_by_other_deployments(client, config, ours.others)
    tags = _tags(factory, config)
    # A resource another deployment also declares (AI Toolkit's fine-tuning deployment declares
    # the same storage account, share and environment; another project may name the same ones)
    # is not this deployment's alone: keep it, with everything under it, or `down --all` would
    # delete the fine-tuned model's share. So is one tagged as another aitk project's.
    for t in targets:
        other = _other_project(tags.get(t.id.lower(), {}), ours.project_id)
        if other and t.id.lower() not in shared:
            shared[t.id.lower()] = f"tagged {ownership.PROJECT_TAG}={other}"
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


def _named_by_other_deployments(client: Any, config: InferenceConfig, others: tuple[Any, ...]) -> dict[str, str]:
    """Resource id (lower case) -> the name of another deployment in the group that declares it."""
    named: dict[str, str] = {}
    for d in others:
        name = str(pick(d, "name", default=""))
        for r in pick(d, "properties", "output_resources", default=[]) or []:
            if pick(r, "id"):
                named.setdefault(str(pick(r, "id")).lower(), name)
    return named


async def plan(factory: ClientFactory, config: InferenceConfig, *, everything: bool = False,
               project: "Project | None" = None) -> TeardownPlan:
    """What ``down`` would delete (nothing is changed). ``project``: whose resources they must be
    (its id in .aitk/state.json names its deployment and tags); without it only what the
    deployments' outputs and the config agree on is this project's."""
    config.require(*APP_KEYS)
    if everything:
        config.require(*SHARE_KEYS)
    project_id = ownership.stored_project_id(project) if project is not None else None
    return await asyncio.to_thread(_plan_sync, factory, config, everything, project_id)


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
    if any(t.type.lower() == CONTAINER_APPS.lower() for t in deleted):
        yield Info("GPU billing of the app stopped; infra/inference.config.json was kept (the names in it are still "
                   "true): `aitk provision` brings the app back.")
    result = TornDown(teardown.resource_group, tuple(deleted), tuple(gone))
    what = ", ".join(f"{t.type.split('/')[-1]} {t.name}" for t in deleted) or "nothing (already gone)"
    yield Done(f"Deleted {what} in {teardown.resource_group}; {teardown.keep_note}.", result=result)
