"""The local cloud's state on disk: resource groups, resources, deployments, keys, apps.

Everything lives in memory under one lock and is written to ``<state_dir>/cloud.json``
(atomically, mode 0600: it holds keys and secrets) after every change, so a restarted
server -- or a server started by another CLI process -- sees the same cloud. File-share
contents are not here: they are real files under ``<state_dir>/files/<account>/<share>/``.

Resource ids are kept with the casing of their first creation and looked up
case-insensitively, as ARM does.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote


STATE_FILE = "cloud.json"
STATE_VERSION = 1


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_duration(seconds: float) -> str:
    return f"PT{max(seconds, 0.0):.4f}S"


@dataclass(frozen=True)
class ResourceRef:
    """A parsed ARM resource id: ``/subscriptions/s/resourceGroups/rg/providers/ns/t1/n1/t2/n2``."""

    subscription: str
    group: str
    namespace: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def full_type(self) -> str:
        return "/".join((self.namespace, *self.types))

    @property
    def full_name(self) -> str:
        return "/".join(self.names)

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def id(self) -> str:
        parts = [f"/subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/{self.namespace}"]
        for t, n in zip(self.types, self.names):
            parts.append(f"{t}/{n}")
        return "/".join(parts)

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"

    def parent(self) -> "ResourceRef | None":
        if len(self.types) < 2:
            return None
        return ResourceRef(self.subscription, self.group, self.namespace, self.types[:-1], self.names[:-1])

    def is_type(self, full_type: str) -> bool:
        return self.full_type.lower() == full_type.lower()


def make_ref(subscription: str, group: str, full_type: str, names: list[str] | tuple[str, ...]) -> ResourceRef:
    ns, *types = full_type.split("/")
    names = tuple(n for name in names for n in str(name).split("/"))
    if not types or len(types) != len(names):
        raise ValueError(f"type {full_type!r} needs {len(types)} name segment(s), got {list(names)}")
    return ResourceRef(subscription, group, ns, tuple(types), names)


def parse_id(resource_id: str) -> ResourceRef | None:
    segs = [unquote(s) for s in resource_id.strip("/").split("/")]
    if (len(segs) < 8 or segs[0].lower() != "subscriptions" or segs[2].lower() != "resourcegroups"
            or segs[4].lower() != "providers" or (len(segs) - 6) % 2):
        return None
    rest = segs[6:]
    return ResourceRef(segs[1], segs[3], segs[5], tuple(rest[0::2]), tuple(rest[1::2]))


def _key(text: str) -> str:
    return text.lower().rstrip("/")


class Store:
    """The cloud's state. Use ``with store.lock`` for read-modify-write, then ``save()``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STATE_FILE
        self.lock = threading.RLock()
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        empty = {"version": STATE_VERSION, "port": None, "groups": {}, "resources": {},
                 "secrets": {}, "deployments": {}, "apps": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return empty
        except ValueError:
            # A corrupt state file is kept for inspection, never silently overwritten.
            self.path.replace(self.path.with_suffix(f".corrupt-{os.getpid()}.json"))
            return empty
        for k, v in empty.items():
            data.setdefault(k, v)
        return data

    def save(self) -> None:
        """Write the state atomically (temp file + rename), mode 0600.

        No fsync: a crash of the process never leaves a torn file, and the local cloud is
        not worth ~8 ms per change for surviving a power cut (deployments save often).
        """
        with self.lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.data, f, indent=1)
            os.replace(tmp, self.path)

    # -- resource groups ---------------------------------------------------------------
    def group(self, sub: str, name: str) -> dict | None:
        with self.lock:
            g = self.data["groups"].get(_key(f"{sub}/{name}"))
            return copy.deepcopy(g) if g else None

    def groups(self, sub: str) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(g) for g in self.data["groups"].values() if g["subscription"].lower() == sub.lower()]

    def put_group(self, sub: str, name: str, location: str, tags: dict | None) -> tuple[dict, bool]:
        with self.lock:
            k = _key(f"{sub}/{name}")
            existing = self.data["groups"].get(k)
            if existing:
                if tags is not None:
                    existing["tags"] = tags
                self.save()
                return copy.deepcopy(existing), False
            g = {"subscription": sub, "name": name, "location": location, "tags": tags or {},
                 "id": f"/subscriptions/{sub}/resourceGroups/{name}", "created": now_iso()}
            self.data["groups"][k] = g
            self.save()
            return copy.deepcopy(g), True

    def delete_group(self, sub: str, name: str) -> bool:
        with self.lock:
            gone = self.data["groups"].pop(_key(f"{sub}/{name}"), None) is not None
            prefix = _key(f"/subscriptions/{sub}/resourceGroups/{name}/")
            for table in ("resources", "secrets", "apps"):
                for k in [k for k in self.data[table] if k.startswith(prefix)]:
                    del self.data[table][k]
            for k in [k for k, d in self.data["deployments"].items()
                      if _key(f"{d['subscription']}/{d['group']}") == _key(f"{sub}/{name}")]:
                del self.data["deployments"][k]
            self.save()
            return gone

    # -- resources -----------------------------------------------------------------------
    def resource(self, resource_id: str) -> dict | None:
        with self.lock:
            r = self.data["resources"].get(_key(resource_id))
            return copy.deepcopy(r) if r else None

    def resources(self, prefix: str = "", full_type: str | None = None) -> list[dict]:
        with self.lock:
            p = _key(prefix) + "/" if prefix else ""
            out = [copy.deepcopy(r) for k, r in sorted(self.data["resources"].items()) if k.startswith(p)]
        if full_type:
            out = [r for r in out if r["type"].lower() == full_type.lower()]
        return out

    def put_resource(self, record: dict) -> None:
        with self.lock:
            k = _key(record["id"])
            old = self.data["resources"].get(k)
            if old:
                record["id"] = old["id"]  # keep the first casing
                record["created"] = old.get("created", record.get("created"))
            self.data["resources"][k] = record
            self.save()

    def delete_resource(self, resource_id: str) -> list[dict]:
        """Delete a resource and its children; returns the deleted records."""
        with self.lock:
            k = _key(resource_id)
            gone = [r for rk, r in self.data["resources"].items() if rk == k or rk.startswith(k + "/")]
            for r in gone:
                self.data["resources"].pop(_key(r["id"]), None)
                self.data["secrets"].pop(_key(r["id"]), None)
                self.data["apps"].pop(_key(r["id"]), None)
            self.save()
            return gone

    # -- secrets (storage keys, workspace keys, app secrets, log-stream tokens) ---------
    def secrets(self, resource_id: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.data["secrets"].get(_key(resource_id), {}))

    def update_secrets(self, resource_id: str, **values: Any) -> dict:
        with self.lock:
            s = self.data["secrets"].setdefault(_key(resource_id), {})
            s.update(values)
            self.save()
            return copy.deepcopy(s)

    # -- container-app runtime (port, revisions, replica pid) --------------------------
    def app(self, app_id: str) -> dict | None:
        with self.lock:
            a = self.data["apps"].get(_key(app_id))
            return copy.deepcopy(a) if a else None

    def apps(self) -> dict[str, dict]:
        with self.lock:
            return copy.deepcopy(self.data["apps"])

    def update_app(self, app_id: str, **values: Any) -> dict:
        with self.lock:
            a = self.data["apps"].setdefault(_key(app_id), {"id": app_id})
            a.update(values)
            self.save()
            return copy.deepcopy(a)

    # -- deployments ---------------------------------------------------------------------
    @staticmethod
    def deployment_key(sub: str, group: str, name: str) -> str:
        return _key(f"{sub}/{group}/{name}")

    def deployment(self, sub: str, group: str, name: str) -> dict | None:
        with self.lock:
            d = self.data["deployments"].get(self.deployment_key(sub, group, name))
            return copy.deepcopy(d) if d else None

    def deployments(self, sub: str, group: str) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(d) for d in self.data["deployments"].values()
                    if _key(f"{d['subscription']}/{d['group']}") == _key(f"{sub}/{group}")]

    def put_deployment(self, record: dict) -> None:
        with self.lock:
            self.data["deployments"][self.deployment_key(record["subscription"], record["group"], record["name"])] = record
            self.save()

    def update_deployment(self, sub: str, group: str, name: str, **values: Any) -> dict:
        with self.lock:
            d = self.data["deployments"][self.deployment_key(sub, group, name)]
            d.update(values)
            self.save()
            return copy.deepcopy(d)

    def delete_deployment(self, sub: str, group: str, name: str) -> bool:
        with self.lock:
            gone = self.data["deployments"].pop(self.deployment_key(sub, group, name), None) is not None
            self.save()
            return gone

    # -- misc ------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        with self.lock:
            return copy.deepcopy(self.data.get(key, default))

    def set(self, key: str, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            self.save()
