"""What creating, reading and deleting each resource type does in the local cloud.

Resources are stored generically (id, type, name, location, the spec as PUT, properties);
a few types have side effects: a storage account gets two random keys and a folder, a
share is a folder (the replica's ``/mount``), a Log Analytics workspace gets a customerId
and keys, a container app gets a stable port, revisions and a replica process. Secrets
(keys, secret values) are kept apart from the properties and never returned by GET.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .httpd import HttpError
from .store import ResourceRef, Store, now_iso, parse_id
from .template import Unresolved

STORAGE = "Microsoft.Storage/storageAccounts"
FILE_SERVICES = "Microsoft.Storage/storageAccounts/fileServices"
SHARES = "Microsoft.Storage/storageAccounts/fileServices/shares"
WORKSPACES = "Microsoft.OperationalInsights/workspaces"
ENVIRONMENTS = "Microsoft.App/managedEnvironments"
ENV_STORAGES = "Microsoft.App/managedEnvironments/storages"
CONTAINER_APPS = "Microsoft.App/containerApps"
# Workload profile types the local cloud offers in every region: (type, category, vCPU, GiB, GPUs).
WORKLOAD_PROFILES = [("Consumption", "Consumption", 4, 8, 0), ("D4", "GeneralPurpose", 4, 16, 0),
                     ("Consumption-GPU-NC24-A100", "GPU", 24, 220, 1), ("Consumption-GPU-NC8as-T4", "GPU", 8, 56, 1),
                     ("NC24-A100", "GPU", 24, 220, 1)]
PROFILE_SIZES = {n.lower(): (cores, mem) for n, _c, cores, mem, _g in WORKLOAD_PROFILES}
GPU_PROFILE_TYPES = {n.lower() for n, _c, _cores, _mem, gpus in WORKLOAD_PROFILES if gpus}
SPEC_KEYS = ("location", "sku", "kind", "tags", "identity", "properties", "zones", "extendedLocation")

_NAME_RULES: dict[str, tuple[re.Pattern, str, str]] = {
    STORAGE.lower(): (re.compile(r"^[a-z0-9]{3,24}$"), "AccountNameInvalid",
                      "is not a valid storage account name: use 3-24 lowercase letters and digits."),
    SHARES.lower(): (re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"), "InvalidShareName",
                     "is not a valid share name: use 3-63 lowercase letters, digits and single hyphens."),
    CONTAINER_APPS.lower(): (re.compile(r"^(?!.*--)[a-z][a-z0-9-]{0,30}[a-z0-9]$"), "ContainerAppInvalidName",
                             "is not a valid container app name: use 2-32 lowercase letters, digits and "
                             "single hyphens, starting with a letter."),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


class ResourceHandlers:
    """Type-specific behaviour over the generic store."""

    def __init__(self, store: Store, files_root: Path, base_url: Callable[[], str]) -> None:
        self.store = store
        self.files_root = files_root
        self.base_url = base_url
        # Set by the cloud: called with the app id after create/update/delete.
        self.on_app_changed: Callable[[str, bool], None] = lambda app_id, new_revision: None
        self.on_app_deleted: Callable[[str], None] = lambda app_id: None
        self.replica_status: Callable[[str], dict] = lambda app_id: {}

    # -- checks --------------------------------------------------------------------------
    @staticmethod
    def name_error(ref: ResourceRef) -> HttpError | None:
        rule = _NAME_RULES.get(ref.full_type.lower())
        if rule and not rule[0].match(ref.name):
            return HttpError(400, rule[1], f"'{ref.name}' {rule[2]}")
        return None

    def check_put(self, ref: ResourceRef) -> None:
        if self.store.group(ref.subscription, ref.group) is None:
            raise HttpError(404, "ResourceGroupNotFound", f"Resource group '{ref.group}' could not be found.")
        err = self.name_error(ref)
        if err:
            raise err
        if ref.is_type(STORAGE):  # storage account names are global in Azure
            taken = [r for r in self.store.resources(full_type=STORAGE)
                     if r["name"].lower() == ref.name.lower() and r["id"].lower() != ref.id.lower()]
            if taken:
                raise HttpError(409, "StorageAccountAlreadyTaken",
                                f"The storage account named {ref.name} is already taken.")
        parent = ref.parent()
        if parent is not None and self.store.resource(parent.id) is None:
            raise HttpError(404, "ParentResourceNotFound",
                            f"Can not perform requested operation on nested resource. Parent resource "
                            f"'{parent.full_name}' not found.")

    # -- create / update ---------------------------------------------------------------
    def put(self, ref: ResourceRef, body: dict) -> tuple[dict, bool]:
        """Create or update (ARM PUT semantics); returns (public view, created)."""
        self.check_put(ref)
        with self.store.lock:
            old = self.store.resource(ref.id)
            spec = {k: copy.deepcopy(body[k]) for k in SPEC_KEYS if k in body}
            group = self.store.group(ref.subscription, ref.group)
            record = {
                "id": ref.id, "name": ref.name, "full_name": ref.full_name, "type": ref.full_type,
                "location": spec.get("location") or (old or {}).get("location") or group["location"],
                "spec": spec, "created": (old or {}).get("created", now_iso()), "changed": now_iso(),
                "properties": copy.deepcopy(spec.get("properties") or {}),
            }
            hook = getattr(self, "_put_" + ref.full_type.split("/", 1)[1].replace("/", "_").lower(), None)
            new_revision = hook(ref, record, old) if hook else None
            record["properties"].setdefault("provisioningState", "Succeeded")
            self.store.put_resource(record)
        if ref.is_type(CONTAINER_APPS):
            self.on_app_changed(ref.id, bool(new_revision))
        return self.view(self.store.resource(ref.id)), old is None

    def _put_storageaccounts(self, ref: ResourceRef, record: dict, old: dict | None) -> None:
        if not self.store.secrets(ref.id).get("keys"):
            self.store.update_secrets(ref.id, keys=[_random_key(), _random_key()], keys_created=now_iso())
        record["properties"]["creationTime"] = (old or {}).get("properties", {}).get("creationTime", now_iso())
        (self.files_root / ref.name).mkdir(parents=True, exist_ok=True)
        fs = ResourceRef(ref.subscription, ref.group, ref.namespace, (*ref.types, "fileServices"), (*ref.names, "default"))
        if self.store.resource(fs.id) is None:  # Azure creates the file service with the account
            self.store.put_resource({"id": fs.id, "name": "default", "full_name": fs.full_name, "type": fs.full_type,
                                     "location": None, "spec": {}, "created": now_iso(), "changed": now_iso(),
                                     "properties": {"provisioningState": "Succeeded"}})

    def _put_storageaccounts_fileservices_shares(self, ref: ResourceRef, record: dict, old: dict | None) -> None:
        (self.files_root / ref.names[0] / ref.name).mkdir(parents=True, exist_ok=True)

    def _put_workspaces(self, ref: ResourceRef, record: dict, old: dict | None) -> None:
        props = record["properties"]
        props["customerId"] = (old or {}).get("properties", {}).get("customerId") or str(uuid.uuid4())
        if not self.store.secrets(ref.id).get("primarySharedKey"):
            self.store.update_secrets(ref.id, primarySharedKey=_random_key(), secondarySharedKey=_random_key())

    def _put_managedenvironments(self, ref: ResourceRef, record: dict, old: dict | None) -> None:
        props = record["properties"]
        if old is not None:
            self._check_gpu_profiles_kept(ref, (old.get("properties") or {}).get("workloadProfiles"),
                                          props.get("workloadProfiles"))
        shared = props.get("appLogsConfiguration", {}).get("logAnalyticsConfiguration", {})
        if shared.pop("sharedKey", None) is not None:
            self.store.update_secrets(ref.id, logAnalyticsSharedKey=True)
        props.update({"defaultDomain": "local.aitk", "staticIp": "127.0.0.1"})

    @staticmethod
    def _check_gpu_profiles_kept(ref: ResourceRef, before: Any, after: Any) -> None:
        """A GPU workload profile is set only when the environment is created (Microsoft Learn,
        "Workload profiles"): a PUT that changes or adds one on an existing environment is refused."""
        def gpu(profiles: Any) -> dict[str, str]:
            return {str(p.get("name")).lower(): str(p.get("workloadProfileType"))
                    for p in profiles or [] if isinstance(p, dict)
                    and str(p.get("workloadProfileType", "")).lower() in GPU_PROFILE_TYPES}
        old, new = gpu(before), gpu(after)
        for name, wanted in new.items():
            had = old.get(name)
            if had is None or had.lower() != wanted.lower():
                was = f"'{had}'" if had else "no GPU profile"
                raise HttpError(400, "WorkloadProfileTypeCannotBeChanged",
                                f"Managed environment '{ref.name}' has {was} in workload profile '{name}'; a GPU "
                                f"workload profile can only be set when the environment is created, so it cannot "
                                f"become '{wanted}'. Create a new environment for it.")

    def _put_managedenvironments_storages(self, ref: ResourceRef, record: dict, old: dict | None) -> None:
        af = record["properties"].get("azureFile") or {}
        key = af.pop("accountKey", None)
        if key:
            self.store.update_secrets(ref.id, accountKey=key)

    def _put_containerapps(self, ref: ResourceRef, record: dict, old: dict | None) -> bool:
        """Returns whether a new revision was made (a template change, as in ACA)."""
        config = record["properties"].setdefault("configuration", {})
        old_values = self.store.secrets(ref.id).get("secrets", {})
        if "secrets" in config:
            # A body copied from GET carries names only: keep the values we have.
            values = {s["name"]: s["value"] if s.get("value") is not None else old_values.get(s["name"])
                      for s in config.get("secrets") or [] if "name" in s}
        else:
            values = old_values
        self.store.update_secrets(ref.id, secrets=values)
        config["secrets"] = [{"name": n} for n in values]
        app = self.store.app(ref.id) or {}
        port = app.get("port") or free_port()
        revisions = list(app.get("revisions") or [])
        thash = template_hash(record["properties"].get("template"))
        new_revision = not revisions or revisions[-1]["template_hash"] != thash
        if new_revision:
            suffix = hashlib.sha256(f"{ref.id}{thash}{len(revisions)}".encode()).hexdigest()[:7]
            for r in revisions:
                r["active"] = False
            revisions.append({"name": f"{ref.name}--{suffix}", "created": now_iso(), "template_hash": thash,
                              "active": True})
        self.store.update_app(ref.id, port=port, revisions=revisions[-10:], stopped=app.get("stopped", False))
        return new_revision

    # -- views ---------------------------------------------------------------------------
    def view(self, record: dict | None) -> dict:
        if record is None:
            return {}
        spec = record.get("spec") or {}
        out: dict[str, Any] = {"id": record["id"], "name": record["name"], "type": record["type"]}
        if record.get("location"):
            out["location"] = record["location"]
        for k in ("sku", "kind", "tags", "identity"):
            if k in spec:
                out[k] = copy.deepcopy(spec[k])
        props = copy.deepcopy(record.get("properties") or {})
        t = record["type"].lower()
        if t == STORAGE.lower():
            base = f"{self.base_url()}/{record['name']}/"
            props["primaryEndpoints"] = {"file": base, "blob": base, "queue": base, "table": base}
            props.setdefault("statusOfPrimary", "available")
        elif t == CONTAINER_APPS.lower():
            self._app_view(record, props)
        out["properties"] = props
        out["systemData"] = {"createdAt": record.get("created"), "lastModifiedAt": record.get("changed"),
                             "createdBy": "local user", "createdByType": "User"}
        return out

    def _app_view(self, record: dict, props: dict) -> None:
        app = self.store.app(record["id"]) or {}
        revs = app.get("revisions") or []
        latest = revs[-1]["name"] if revs else None
        fqdn = f"127.0.0.1:{app.get('port')}"
        ingress = props.setdefault("configuration", {}).get("ingress")
        if ingress is not None:
            ingress["fqdn"] = fqdn
        props.update({
            "provisioningState": "Succeeded",
            "runningStatus": "Stopped" if app.get("stopped") else "Running",
            "managedEnvironmentId": props.get("environmentId") or props.get("managedEnvironmentId"),
            "latestRevisionName": latest,
            "latestReadyRevisionName": app.get("ready_revision"),
            "latestRevisionFqdn": fqdn if ingress is not None else "",
            "outboundIpAddresses": ["127.0.0.1"],
            "customDomainVerificationId": hashlib.sha256(record["id"].lower().encode()).hexdigest().upper(),
            "eventStreamEndpoint": f"{self.base_url()}/_local/eventstream{record['id']}",
        })

    # -- reference() / listKeys() for templates and the list actions ---------------------
    def reference(self, resource_id: str, api_version: str | None = None, full: bool = False) -> Any:
        record = self.store.resource(resource_id)
        if record is None:
            raise Unresolved(resource_id)
        v = self.view(record)
        return v if full else v["properties"]

    def list_keys(self, resource_id: str, api_version: str | None = None) -> dict:
        ref = parse_id(resource_id)
        record = self.store.resource(resource_id)
        if ref is None or record is None:
            raise Unresolved(resource_id)
        s = self.store.secrets(resource_id)
        if ref.is_type(STORAGE):
            created = s.get("keys_created")
            return {"keys": [{"keyName": f"key{i + 1}", "value": k, "permissions": "FULL", "creationTime": created}
                             for i, k in enumerate(s.get("keys", []))]}
        if ref.is_type(WORKSPACES):
            return {"primarySharedKey": s.get("primarySharedKey"), "secondarySharedKey": s.get("secondarySharedKey")}
        if ref.is_type(CONTAINER_APPS):
            return {"value": [{"name": n, "value": v} for n, v in (s.get("secrets") or {}).items()]}
        raise HttpError(400, "InvalidAction", f"Listing keys is not supported for {ref.full_type} in the local cloud.")

    def shared_key_allowed(self, account: str) -> bool:
        """False when the account sets allowSharedKeyAccess: false (Azure then refuses SharedKey)."""
        for r in self.store.resources(full_type=STORAGE):
            if r["name"].lower() == account.lower():
                return (r.get("properties") or {}).get("allowSharedKeyAccess") is not False
        return True

    def storage_keys(self, account: str) -> list[str] | None:
        """Keys of a storage account by name (any group): the Files data plane's check."""
        for r in self.store.resources(full_type=STORAGE):
            if r["name"].lower() == account.lower():
                return self.store.secrets(r["id"]).get("keys")
        return None

    # -- delete --------------------------------------------------------------------------
    def delete(self, ref: ResourceRef, *, refuse_in_use: bool = False) -> bool:
        """Delete a resource and its children. ``refuse_in_use``: as Azure does for a single
        DELETE, refuse an environment that container apps still run in (a group delete does not ask)."""
        if refuse_in_use and ref.is_type(ENVIRONMENTS):
            users = [r["name"] for r in self.store.resources(full_type=CONTAINER_APPS)
                     if str((r.get("properties") or {}).get("environmentId")
                            or (r.get("properties") or {}).get("managedEnvironmentId") or "").lower() == ref.id.lower()]
            if users:
                raise HttpError(409, "ManagedEnvironmentHasContainerApps",
                                f"Cannot delete managed environment '{ref.name}' because it has container apps: "
                                f"{', '.join(sorted(users))}. Delete them first.")
        gone = self.store.delete_resource(ref.id)
        for r in gone:
            t = r["type"].lower()
            if t == CONTAINER_APPS.lower():
                self.on_app_deleted(r["id"])
            elif t == STORAGE.lower():
                shutil.rmtree(self.files_root / r["name"], ignore_errors=True)
            elif t == SHARES.lower():
                shutil.rmtree(self.files_root / r["full_name"].split("/")[0] / r["name"], ignore_errors=True)
        return bool(gone)

    def delete_group_contents(self, sub: str, group: str) -> None:
        for r in self.store.resources(f"/subscriptions/{sub}/resourceGroups/{group}"):
            ref = parse_id(r["id"])
            if ref is not None and len(ref.types) == 1:
                self.delete(ref)

    def share_folder(self, app_id: str) -> tuple[Path | None, str]:
        """The folder an app's ``/mount`` volume maps to, or (None, why not)."""
        record = self.store.resource(app_id)
        if record is None:
            return None, "the container app does not exist"
        ref = parse_id(app_id)
        template = record["properties"].get("template") or {}
        env_id = record["properties"].get("environmentId") or record["properties"].get("managedEnvironmentId")
        for vol in template.get("volumes") or []:
            if (vol.get("storageType") or "").lower() != "azurefile" or not env_id:
                continue
            st = self.store.resource(f"{env_id}/storages/{vol.get('storageName')}")
            af = (st or {}).get("properties", {}).get("azureFile") or {}
            if af.get("accountName") and af.get("shareName"):
                folder = self.files_root / af["accountName"] / af["shareName"]
                if not folder.is_dir():
                    return None, f"the share {af['accountName']}/{af['shareName']} does not exist"
                return folder, ""
            return None, f"the environment storage {vol.get('storageName')!r} is missing or incomplete"
        return None, f"the app {ref.name if ref else app_id} mounts no Azure Files volume"
