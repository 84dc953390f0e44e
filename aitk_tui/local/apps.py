"""Container-app routes: secrets, auth token, revisions, replicas, restart, start/stop, PATCH,
and the replica log stream.

The replica's state comes from :class:`~.replicas.ReplicaManager`. The log stream
(``logStreamEndpoint``) is served under ``/_local/logstream/...`` and accepts only a
token from ``getAuthtoken``, as ACA's does; it answers plain text lines like ACA's
``?follow=true&output=text&tailLines=N``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from .httpd import HttpError, Request, Response, json_response
from .replicas import ReplicaManager, replica_name
from .resources import CONTAINER_APPS, ResourceHandlers
from .store import ResourceRef, Store, make_ref

TOKEN_LIFETIME_S = 3600


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class AppsApi:
    def __init__(self, store: Store, handlers: ResourceHandlers, replicas: ReplicaManager,
                 base_url: Callable[[], str], stopping: threading.Event) -> None:
        self.store, self.handlers, self.replicas, self.base_url = store, handlers, replicas, base_url
        self.stopping = stopping
        self.async_result: Callable[..., str] = lambda **kw: ""  # set by the ARM api

    def _record(self, ref: ResourceRef) -> dict:
        record = self.store.resource(ref.id)
        if record is None:
            raise HttpError(404, "ResourceNotFound", f"The Resource 'Microsoft.App/containerApps/{ref.name}' under "
                                                     f"resource group '{ref.group}' was not found.")
        return record

    def handle(self, req: Request, sub: str, group: str, app: str, rest: list[str], low: list[str]) -> Response | None:
        ref = make_ref(sub, group, CONTAINER_APPS, [app])
        m = req.method
        if not rest:
            if m == "PATCH":
                record = self._record(ref)
                self.patch_generic(ref, record, req.json())
                return Response(202, b"", {"Azure-AsyncOperation": self.async_result(status="Succeeded"),
                                           "Location": self.async_result(status="Succeeded")})
            return None  # GET / PUT / DELETE: the generic resource routes
        record = self._record(ref)
        if low == ["listsecrets"] and m == "POST":
            return json_response(200, self.handlers.list_keys(ref.id))
        if low == ["getauthtoken"] and m == "POST":
            return json_response(200, self._auth_token(ref, record))
        if low in (["start"], ["stop"]) and m == "POST":
            self.store.update_app(ref.id, stopped=low[0] == "stop")
            self.replicas.restart(ref.id)
            return json_response(200, self.handlers.view(self.store.resource(ref.id)))
        if low[:1] == ["revisions"]:
            return self._revisions(req, ref, record, rest[1:], low[1:])
        return None

    def patch_generic(self, ref: ResourceRef, record: dict, patch: dict) -> dict:
        spec = merge_patch(record.get("spec") or {}, {k: v for k, v in patch.items() if k not in ("id", "name", "type")})
        view, _ = self.handlers.put(ref, spec)
        return view

    # -- auth token and log stream ------------------------------------------------------------
    def _auth_token(self, ref: ResourceRef, record: dict) -> dict:
        token = secrets.token_urlsafe(32)
        expires = time.time() + TOKEN_LIFETIME_S
        tokens = {t: e for t, e in (self.store.secrets(ref.id).get("log_tokens") or {}).items() if e > time.time()}
        tokens[token] = expires
        self.store.update_secrets(ref.id, log_tokens=tokens)
        iso = _dt.datetime.fromtimestamp(expires, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"id": f"{ref.id}/authtoken", "name": ref.name, "type": "Microsoft.App/containerApps/authtoken",
                "location": record.get("location"), "properties": {"token": token, "expires": iso}}

    def log_stream(self, req: Request) -> Response:
        """GET /_local/logstream/<app id>/revisions/<rev>/replicas/<r>/containers/<c>/logstream."""
        path = req.path[len("/_local/logstream"):]
        low = path.lower()
        cut = low.find("/revisions/")
        app_id = path[:cut] if cut > 0 else path.rsplit("/logstream", 1)[0]
        return self._tail(req, app_id, self.replicas.log_path(app_id))

    def event_stream(self, req: Request) -> Response:
        """GET /_local/eventstream/<app id>: the app's system log (``eventStreamEndpoint``),
        one JSON event per line as ACA's (whatever ``output`` asks for)."""
        app_id = req.path[len("/_local/eventstream"):].rstrip("/")
        return self._tail(req, app_id, self.replicas.system_log_path(app_id))

    def _tail(self, req: Request, app_id: str, log_path) -> Response:
        record = self.store.resource(app_id)
        if record is None:
            raise HttpError(404, "ResourceNotFound", "The container app of this log stream does not exist.")
        auth = req.header("Authorization") or ""
        token = auth[7:].strip() if auth.startswith("Bearer ") else req.query.get("token", "")
        tokens = self.store.secrets(app_id).get("log_tokens") or {}
        if not token or tokens.get(token, 0) < time.time():
            raise HttpError(401, "Unauthorized", "A valid token from getAuthtoken is required for the log stream.")
        try:  # ACA answers 0..300 lines; a bad number is the caller's error, not a 500
            tail = min(max(int(req.query.get("taillines") or 20), 0), 10_000)
        except ValueError:
            raise HttpError(400, "InvalidParameter", "tailLines must be a whole number.") from None
        follow = (req.query.get("follow") or "false").lower() == "true"
        data = log_path.read_bytes() if log_path.is_file() else b""
        lines = data.splitlines(keepends=True)
        head = b"".join(lines[-tail:]) if tail > 0 else b""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if not follow:
            return Response(200, head, headers)
        start = len(data)

        def stream(write, alive) -> None:
            write(head)
            pos = start
            while not self.stopping.is_set() and alive():
                try:
                    size = os.path.getsize(log_path)
                except OSError:
                    size = 0
                if size < pos:  # rotated or truncated
                    pos = 0
                if size > pos:
                    with open(log_path, "rb") as f:
                        f.seek(pos)
                        chunk = f.read(size - pos)
                    cut_at = chunk.rfind(b"\n") + 1  # whole lines only
                    if cut_at:
                        write(chunk[:cut_at])
                        pos += cut_at
                self.stopping.wait(0.2)
        return Response(200, b"", headers, stream=stream)

    # -- revisions and replicas ------------------------------------------------------------------
    def _revisions(self, req: Request, ref: ResourceRef, record: dict, rest: list[str], low: list[str]) -> Response:
        m = req.method
        app = self.store.app(ref.id) or {}
        revs = app.get("revisions") or []
        if not rest and m == "GET":
            return json_response(200, {"value": [self._revision_view(ref, record, app, r) for r in revs]})
        rev = next((r for r in revs if r["name"].lower() == (low[0] if low else "")), None)
        if rev is None:
            raise HttpError(404, "ContainerAppRevisionNotFound", f"Revision '{rest[0] if rest else ''}' was not found.")
        if len(rest) == 1 and m == "GET":
            return json_response(200, self._revision_view(ref, record, app, rev))
        if len(rest) == 2 and low[1] == "restart" and m == "POST":
            if rev["active"]:
                self.replicas.append_log(ref.id, f"revision {rev['name']} restart requested")
                self.replicas.restart(ref.id)
            return Response(200)
        if len(rest) == 2 and low[1] in ("activate", "deactivate") and m == "POST":
            return Response(200)
        if len(rest) >= 2 and low[1] == "replicas" and m == "GET":
            replicas = self._replica_views(ref, record, rev)
            if len(rest) == 2:
                return json_response(200, {"value": replicas})
            match = next((r for r in replicas if r["name"].lower() == low[2]), None)
            if match is None:
                raise HttpError(404, "ContainerAppReplicaNotFound", f"Replica '{rest[2]}' was not found.")
            return json_response(200, match)
        raise HttpError(501, "NotImplementedInLocalCloud", f"The local cloud does not serve {m} {req.raw_path}")

    def _revision_view(self, ref: ResourceRef, record: dict, app: dict, rev: dict) -> dict:
        st = self.replicas.status(ref.id) if rev["active"] else {}
        state = st.get("state", "Stopped")
        if not rev["active"]:
            running, health, replicas = "Stopped", "None", 0
        else:
            # ACA's words (learn.microsoft.com/azure/container-apps/revisions#running-status), not the
            # spec's enum: a replica that never became ready is still Activating, then ActivationFailed
            # once its startup probe's limit passed; one that failed after serving leaves it Degraded.
            running = {"Running": "Running", "Activating": "Activating", "ScaledToZero": "ScaledToZero",
                       "Failed": "Degraded" if st.get("activated") else "Activating"}.get(state, "Stopped")
            if st.get("activation_failed") and state != "Running":
                running = "ActivationFailed"
            health = "Healthy" if st.get("ready") else ("Unhealthy" if running in ("Degraded", "ActivationFailed")
                                                        else "None")
            replicas = 1 if st.get("started") or state in ("Running", "Activating", "Failed") else 0
        details = {"ActivationFailed": st.get("activation_failed"), "Degraded": st.get("details")}.get(running)
        view = {"id": f"{ref.id}/revisions/{rev['name']}", "name": rev["name"],
                "type": "Microsoft.App/containerApps/revisions",
                "properties": {"createdTime": rev["created"], "lastActiveTime": rev["created"],
                               "fqdn": f"127.0.0.1:{app.get('port')}", "template": record["properties"].get("template"),
                               "active": rev["active"], "replicas": replicas, "trafficWeight": 100 if rev["active"] else 0,
                               "healthState": health, "provisioningState": "Provisioned", "runningState": running}}
        if details:
            view["properties"]["runningStateDetails"] = details  # Azure sends it; the spec does not list it
        return view

    def _replica_views(self, ref: ResourceRef, record: dict, rev: dict) -> list[dict]:
        if not rev["active"]:
            return []
        st = self.replicas.status(ref.id)
        if st["state"] in ("Stopped", "ScaledToZero") or (self.store.app(ref.id) or {}).get("stopped"):
            return []  # a stopped app has no replica, even while its last one is being ended
        containers = (record["properties"].get("template") or {}).get("containers") or [{}]
        cname = containers[0].get("name") or ref.name
        name = replica_name(rev["name"], ref.id)
        rev_id = f"{ref.id}/revisions/{rev['name']}"
        alive = bool(st.get("started"))
        c_state = "Running" if alive else ("Waiting" if st["state"] == "Failed" else "Terminated")
        endpoint = f"{self.base_url()}/_local/logstream{rev_id}/replicas/{name}/containers/{cname}/logstream"
        return [{"id": f"{rev_id}/replicas/{name}", "name": name, "type": "Microsoft.App/containerApps/revisions/replicas",
                 "properties": {"createdTime": st.get("created"), "runningState": "Running" if alive else "NotRunning",
                                "runningStateDetails": st.get("details"),
                                "containers": [{"name": cname, "ready": bool(st.get("ready")), "started": alive,
                                                "containerId": "local://" + hashlib.sha256(
                                                    f"{name}{st.get('pid')}".encode()).hexdigest()[:24],
                                                "restartCount": st.get("restart_count", 0), "runningState": c_state,
                                                "runningStateDetails": st.get("details"), "logStreamEndpoint": endpoint,
                                                "execEndpoint": endpoint.replace("/logstream", "/exec")}],
                                "initContainers": []}}]
