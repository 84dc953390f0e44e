"""Azure Resource Manager routes: subscriptions, resource groups, deployments, resources.

Paths are matched case-insensitively (``resourceGroups`` and ``resourcegroups`` alike).
Status codes follow what the SDK's pollers expect (see azure-sdk-offline.md): deployment
PUT answers 200/201 with ``Azure-AsyncOperation``; what-if answers 202 with ``Location``;
a resource PUT is synchronous (200/201 with provisioningState Succeeded). A path nobody
serves answers 501 with the method and path, so a missing route is easy to find.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from . import providers
from .apps import AppsApi
from .credential import LOCAL_SUBSCRIPTION_ID, LOCAL_SUBSCRIPTION_NAME, LOCAL_TENANT_ID
from .deployments import DeploymentEngine
from .httpd import HttpError, Request, Response, json_response
from .resources import STORAGE, WORKLOAD_PROFILES, ResourceHandlers
from .store import Store, make_ref

log = logging.getLogger("aitk_tui.local")
LOCATIONS = [("eastus", "East US"), ("westus3", "West US 3"), ("swedencentral", "Sweden Central"),
             ("australiaeast", "Australia East"), ("westeurope", "West Europe"), ("northeurope", "North Europe")]
PROVIDERS = ["Microsoft.Resources", "Microsoft.Storage", "Microsoft.App", "Microsoft.OperationalInsights"]


def not_served(req: Request) -> HttpError:
    q = f"?{req.raw_query}" if req.raw_query else ""
    log.warning("501 not served: %s %s%s", req.method, req.raw_path, q)
    return HttpError(501, "NotImplementedInLocalCloud", f"The local cloud does not serve {req.method} {req.raw_path}{q}")


class ArmApi:
    def __init__(self, store: Store, handlers: ResourceHandlers, engine: DeploymentEngine, apps: AppsApi,
                 base_url: Callable[[], str]) -> None:
        self.store, self.handlers, self.engine, self.apps, self.base_url = store, handlers, engine, apps, base_url
        self._results: dict[str, dict] = {}  # async operation id -> {"status", "result"?, "error"?}
        self._results_lock = threading.Lock()

    # -- async operations (what-if Location, PATCH Azure-AsyncOperation) --------------------
    def async_result(self, status: str = "Succeeded", result: Any = None, error: dict | None = None) -> str:
        op_id = secrets.token_hex(12)
        with self._results_lock:
            if len(self._results) > 200:
                self._results.pop(next(iter(self._results)))
            self._results[op_id] = {"status": status, "result": result, "error": error}
        return f"{self.base_url()}/subscriptions/{LOCAL_SUBSCRIPTION_ID}/providers/Microsoft.Resources/operationResults/{op_id}?api-version=2021-04-01"

    def _op_result(self, op_id: str) -> Response:
        with self._results_lock:
            r = self._results.get(op_id)
        if r is None:
            raise HttpError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        if r["result"] is not None:
            return json_response(200, r["result"])
        body = {"id": op_id, "name": op_id, "status": r["status"]}
        if r["error"]:
            body["error"] = r["error"]
        return json_response(200, body)

    # -- entry point ---------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        segs = req.segments
        low = [s.lower() for s in segs]
        m = req.method
        if low == ["subscriptions"] and m == "GET":
            return json_response(200, {"value": [self._subscription()], "count": {"type": "Total", "value": 1}})
        if low == ["tenants"] and m == "GET":
            return json_response(200, {"value": [{"id": f"/tenants/{LOCAL_TENANT_ID}", "tenantId": LOCAL_TENANT_ID,
                                                  "displayName": "Local cloud (aitk)", "defaultDomain": "local.aitk",
                                                  "tenantCategory": "Home"}]})
        if low[0] != "subscriptions" or len(segs) < 2:
            raise not_served(req)
        sub = segs[1]
        if sub.lower() != LOCAL_SUBSCRIPTION_ID:
            raise HttpError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        sub = LOCAL_SUBSCRIPTION_ID
        rest, lrest = segs[2:], low[2:]
        if not rest and m == "GET":
            return json_response(200, self._subscription())
        if lrest == ["locations"] and m == "GET":
            return json_response(200, {"value": [self._location(n, d) for n, d in LOCATIONS]})
        if lrest == ["resources"] and m == "GET":
            return json_response(200, {"value": [self._brief(r) for r in self.store.resources(f"/subscriptions/{sub}")]})
        if lrest[:1] == ["providers"]:
            return self._providers(req, sub, rest[1:], lrest[1:])
        if lrest[:1] == ["resourcegroups"]:
            if len(rest) == 1 and m == "GET":
                return json_response(200, {"value": [self._group_view(g) for g in self.store.groups(sub)]})
            if len(rest) >= 2:
                return self._in_group(req, sub, rest[1], rest[2:], lrest[2:])
        raise not_served(req)

    # -- subscription-level ---------------------------------------------------------------------
    @staticmethod
    def _subscription() -> dict:
        return {"id": f"/subscriptions/{LOCAL_SUBSCRIPTION_ID}", "subscriptionId": LOCAL_SUBSCRIPTION_ID,
                "tenantId": LOCAL_TENANT_ID, "displayName": LOCAL_SUBSCRIPTION_NAME, "state": "Enabled",
                "authorizationSource": "RoleBased", "managedByTenants": [], "tags": {},
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                         "spendingLimit": "Off"}}

    @staticmethod
    def _location(name: str, display: str) -> dict:
        return {"id": f"/subscriptions/{LOCAL_SUBSCRIPTION_ID}/locations/{name}", "name": name, "displayName": display,
                "regionalDisplayName": f"({display.split()[-1]}) {display}", "type": "Region",
                "metadata": {"regionType": "Physical", "regionCategory": "Recommended"}}

    def _check_provider(self, req: Request, namespace: str, rest: list[str], location: str) -> None:
        """ARM's gate before a provider's route: the api-version must be one the provider
        serves, and the subscription must be registered for it."""
        if namespace.lower() == "microsoft.resources" or namespace.lower() not in {p.lower() for p in PROVIDERS}:
            return  # a namespace the local cloud does not know ends in its 501 below
        version = req.query.get("api-version", "")
        if not version:
            raise HttpError(400, "MissingApiVersionParameter",
                            "The api-version query parameter (?api-version=) is required for all requests.")
        if not providers.serves(namespace, version):
            rtype = "/".join(rest[0::2]) or namespace
            raise providers.no_registered_provider(namespace, rtype, version, location)
        if not self.engine.faults.is_registered(namespace):
            raise providers.missing_registration(namespace)

    def _providers(self, req: Request, sub: str, rest: list[str], low: list[str]) -> Response:
        m = req.method
        if not rest and m == "GET":
            return json_response(200, {"value": [self._provider(sub, p) for p in PROVIDERS]})
        if len(rest) == 2 and low[1] == "register" and m == "POST":
            pending = not self.engine.faults.is_registered(rest[0])
            self.engine.faults.register(rest[0])
            return json_response(200, self._provider(sub, rest[0], "Registering" if pending else None))
        if len(rest) == 1 and m == "GET":
            return json_response(200, self._provider(sub, rest[0]))
        if len(rest) >= 2:
            self._check_provider(req, rest[0], rest[1:], rest[2] if low[1:2] == ["locations"] and len(rest) > 2
                                 else "global")
        if len(rest) == 2 and m == "GET":  # e.g. every container app of the subscription
            items = self.store.resources(f"/subscriptions/{sub}", full_type=f"{rest[0]}/{rest[1]}")
            return json_response(200, {"value": [self.handlers.view(r) for r in items]})
        if low[:2] == ["microsoft.resources", "operationresults"] and len(rest) == 3:
            return self._op_result(rest[2])
        if low[:2] == ["microsoft.app", "locations"] and len(rest) == 4 and low[3] == "usages" and m == "GET":
            return json_response(200, {"value": self._usages()})
        if (low[:2] == ["microsoft.app", "locations"] and len(rest) == 4
                and low[3] == "availablemanagedenvironmentsworkloadprofiletypes"):
            return json_response(200, {"value": [
                {"id": f"/subscriptions/{sub}/providers/Microsoft.App/locations/{rest[2]}/"
                       f"availableManagedEnvironmentsWorkloadProfileTypes/{n}", "name": n, "location": rest[2],
                 "type": "Microsoft.App/locations/availableManagedEnvironmentsWorkloadProfileTypes",
                 # The spec's and Microsoft's example's keys (AvailableWorkloadProfiles.json): memoryGiB, no code
                 "properties": {"displayName": n, "category": c, "cores": cores, "memoryGiB": mem,
                                "gpus": gpus, "applicability": "LocationDefault"}}
                for n, c, cores, mem, gpus in WORKLOAD_PROFILES]})
        raise not_served(req)

    def _usages(self) -> list[dict]:
        """Microsoft.App's usages of a region (the spec's Usages_List shape). The two serverless
        GPU quotas are named here as the local cloud models them; ``no_gpu_quota`` sets them to 0."""
        gpu_limit = 0 if self.engine.faults.no_gpu_quota else 4
        envs = len(self.store.resources(full_type="Microsoft.App/managedEnvironments"))
        rows = [("ManagedEnvironmentCount", envs, 15), ("ManagedEnvironmentCores", 0, 100),
                ("ManagedEnvironmentConsumptionNCA100Gpus", 0, gpu_limit),
                ("ManagedEnvironmentConsumptionT4Gpus", 0, gpu_limit)]
        return [{"currentValue": cur, "limit": limit, "unit": "Count",
                 "name": {"value": name, "localizedValue": name}} for name, cur, limit in rows]

    def _provider(self, sub: str, ns: str, state: str | None = None) -> dict:
        name = next((p for p in PROVIDERS if p.lower() == ns.lower()), ns)
        return {"id": f"/subscriptions/{sub}/providers/{name}", "namespace": name,
                "registrationState": state or self.engine.faults.registration_state(name),
                "registrationPolicy": "RegistrationRequired", "resourceTypes": []}

    # -- resource groups ---------------------------------------------------------------------------
    @staticmethod
    def _group_view(g: dict) -> dict:
        return {"id": g["id"], "name": g["name"], "type": "Microsoft.Resources/resourceGroups", "location": g["location"],
                "tags": g.get("tags") or {}, "properties": {"provisioningState": "Succeeded"}}

    @staticmethod
    def _brief(r: dict) -> dict:
        out = {"id": r["id"], "name": r["full_name"], "type": r["type"]}
        if r.get("location"):
            out["location"] = r["location"]
        for k in ("sku", "kind", "tags"):
            if k in (r.get("spec") or {}):
                out[k] = r["spec"][k]
        return out

    def _require_group(self, sub: str, group: str) -> dict:
        g = self.store.group(sub, group)
        if g is None:
            raise HttpError(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
        return g

    def _in_group(self, req: Request, sub: str, group: str, rest: list[str], low: list[str]) -> Response:
        m = req.method
        if not rest:
            if m == "HEAD":
                return Response(204 if self.store.group(sub, group) else 404)
            if m == "GET":
                return json_response(200, self._group_view(self._require_group(sub, group)))
            if m in ("PUT", "PATCH"):
                body = req.json()
                existing = self.store.group(sub, group)
                if m == "PATCH" and existing is None:
                    self._require_group(sub, group)
                location = body.get("location") or (existing or {}).get("location")
                if not location:
                    raise HttpError(400, "LocationRequired", "The location property is required for this definition.")
                g, created = self.store.put_group(sub, group, location, body.get("tags"))
                return json_response(201 if created else 200, self._group_view(g))
            if m == "DELETE":
                self._require_group(sub, group)
                self.handlers.delete_group_contents(sub, group)
                self.store.delete_group(sub, group)
                return Response(200)
        g = self._require_group(sub, group)
        group = g["name"]
        if low == ["resources"] and m == "GET":
            return json_response(200, {"value": [self._brief(r) for r in self.store.resources(g["id"])]})
        if low[:1] == ["deployments"] and len(rest) >= 3 and low[2] == "operations":
            return self._deployment_operations(req, sub, group, rest[1], rest[3:])
        if low[:1] == ["providers"] and len(rest) >= 2:
            if low[1] == "microsoft.resources" and low[2:3] == ["deployments"]:
                return self._deployments(req, sub, group, rest[3:], low[3:])
            self._check_provider(req, rest[1], rest[2:], g["location"])
            if low[1] == "microsoft.app" and low[2:3] == ["containerapps"] and len(rest) >= 4:
                resp = self.apps.handle(req, sub, group, rest[3], rest[4:], [s.lower() for s in rest[4:]])
                if resp is not None:
                    return resp
            return self._resource(req, sub, group, rest[1], rest[2:])
        raise not_served(req)

    # -- deployments -------------------------------------------------------------------------------
    def _deployment(self, sub: str, group: str, name: str) -> dict:
        d = self.store.deployment(sub, group, name)
        if d is None:
            raise HttpError(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")
        return d

    def _deployments(self, req: Request, sub: str, group: str, rest: list[str], low: list[str]) -> Response:
        m = req.method
        if not rest and m == "GET":
            return json_response(200, {"value": [self.engine.view(d) for d in self.store.deployments(sub, group)]})
        if not rest:
            raise not_served(req)
        name = rest[0]
        if len(rest) == 1:
            if m == "PUT":
                view, created = self.engine.start(sub, group, name, req.json())
                status_url = (f"{self.base_url()}/subscriptions/{sub}/resourcegroups/{group}/providers/"
                              f"Microsoft.Resources/deployments/{name}/operationStatuses/{self._deployment(sub, group, name)['run_id']}"
                              "?api-version=2021-04-01")
                return json_response(201 if created else 200, view, {"Azure-AsyncOperation": status_url})
            if m == "GET":
                return json_response(200, self.engine.view(self._deployment(sub, group, name)))
            if m == "HEAD":
                return Response(204 if self.store.deployment(sub, group, name) else 404)
            if m == "DELETE":
                d = self._deployment(sub, group, name)
                if d["state"] in ("Accepted", "Running"):
                    raise HttpError(409, "DeploymentActive", f"The deployment '{name}' is still active.")
                self.store.delete_deployment(sub, group, name)
                return Response(204)
        action = low[1] if len(rest) >= 2 else ""
        if action == "operationstatuses" and len(rest) == 3 and m == "GET":
            d = self._deployment(sub, group, name)
            status = {"Accepted": "Running"}.get(d["state"], d["state"])
            body: dict[str, Any] = {"status": status}
            if d.get("error"):
                body["error"] = d["error"]
            return json_response(200, body)
        if action == "validate" and m == "POST":
            try:
                return json_response(200, self.engine.validate(sub, group, name, req.json()))
            except HttpError as e:
                if e.status != 400:
                    raise
                return json_response(400, {"error": e.error_body()})
        if action == "whatif" and m == "POST":
            result = self.engine.what_if(sub, group, name, req.json())
            return Response(202, b"", {"Location": self.async_result(result=result)})
        if action == "cancel" and m == "POST":
            if not self.engine.cancel(sub, group, name):
                raise HttpError(409, "DeploymentCannotBeCancelled", f"The deployment '{name}' is not running.")
            return Response(204)
        raise not_served(req)

    def _deployment_operations(self, req: Request, sub: str, group: str, name: str, rest: list[str]) -> Response:
        if req.method != "GET":
            raise not_served(req)
        ops = self.engine.operations_view(self._deployment(sub, group, name))
        if not rest:
            return json_response(200, {"value": ops})
        op = next((o for o in ops if o["operationId"].lower() == rest[0].lower()), None)
        if op is None:
            raise HttpError(404, "DeploymentOperationNotFound", f"Operation '{rest[0]}' could not be found.")
        return json_response(200, op)

    # -- generic resources ---------------------------------------------------------------------------
    def _resource(self, req: Request, sub: str, group: str, namespace: str, rest: list[str]) -> Response:
        m = req.method
        if len(rest) % 2 == 1:  # a collection (GET) or an action on a resource (POST)
            if m == "GET":
                prefix = f"/subscriptions/{sub}/resourceGroups/{group}"
                full_type = "/".join([namespace, *rest[0::2]])
                parent = "/".join(f"{t}/{n}" for t, n in zip(rest[0:-1:2], rest[1:-1:2]))
                items = [self.handlers.view(r) for r in self.store.resources(prefix, full_type)
                         if not parent or f"/{parent.lower()}/" in r["id"].lower()]
                return json_response(200, {"value": items})
            if m == "POST" and len(rest) >= 3:
                ref = make_ref(sub, group, "/".join([namespace, *rest[0:-1:2]]), rest[1:-1:2])
                if self.store.resource(ref.id) is None:
                    raise HttpError(404, "ResourceNotFound", f"The Resource '{ref.full_type}/{ref.full_name}' under "
                                                             f"resource group '{group}' was not found.")
                action = rest[-1].lower()
                if action in ("listkeys", "sharedkeys", "listsecrets"):
                    return json_response(200, self.handlers.list_keys(ref.id))
            raise not_served(req)
        if not rest:
            raise not_served(req)
        ref = make_ref(sub, group, "/".join([namespace, *rest[0::2]]), rest[1::2])
        if m == "PUT":
            view, created = self.handlers.put(ref, req.json())
            # Storage's SDK accepts only 200/202 on create (Azure answers 200 when done at once).
            return json_response(201 if created and not ref.is_type(STORAGE) else 200, view)
        record = self.store.resource(ref.id)
        if m == "DELETE":
            return Response(200 if self.handlers.delete(ref, refuse_in_use=True) else 204)
        if record is None:
            if m == "HEAD":
                return Response(404)
            raise HttpError(404, "ResourceNotFound", f"The Resource '{ref.full_type}/{ref.full_name}' under resource "
                                                     f"group '{group}' was not found.")
        if m == "GET":
            return json_response(200, self.handlers.view(record))
        if m == "HEAD":
            return Response(204)
        if m == "PATCH":
            return json_response(200, self.apps.patch_generic(ref, record, req.json()))
        raise not_served(req)
