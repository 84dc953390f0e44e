"""Template deployments: validate, what-if, and the background run of a deployment.

A deployment evaluates the template sent with it (parameters given, defaults evaluated),
then creates each resource in dependency order; each resource is one deployment operation
that goes Accepted -> Running -> Succeeded (``op_delay_s`` apart), then the outputs are
evaluated. Existing resources are updated, missing ones created (incremental mode). The
record lives in the store, so a deployment still running when the server stops resumes
when it starts again (resources already Succeeded are not redone).
"""

from __future__ import annotations

import heapq
import re
import logging
import secrets
import threading
import time
import uuid
from typing import Any

from . import providers
from .faults import Faults
from .httpd import HttpError
from .resources import CONTAINER_APPS, ENVIRONMENTS, PROFILE_SIZES, ResourceHandlers, template_hash
from .store import ResourceRef, Store, iso_duration, make_ref, now_iso
from .template import Context, TemplateError, Unresolved, evaluate

log = logging.getLogger("aitk_tui.local")
_TYPES = {"string": "String", "securestring": "SecureString", "int": "Int", "bool": "Bool",
          "array": "Array", "object": "Object", "secureobject": "SecureObject"}
_PY = {"string": str, "securestring": str, "int": int, "bool": bool, "array": list, "object": dict, "secureobject": dict}
ACTIVE = ("Accepted", "Running")
DEPLOYMENT_FAILED = ("At least one resource deployment operation failed. Please list deployment operations for "
                     "details. Please see https://aka.ms/arm-deployment-operations for usage details.")
TERMINAL_FAILED = ("The resource write operation failed to complete successfully, because it reached terminal "
                   "provisioning state 'Failed'.")
_MEMORY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(Gi|Mi)?\s*")


def _gib(text: Any) -> float | None:
    m = _MEMORY.fullmatch(str(text if text is not None else ""))
    if not m:
        return None
    value = float(m.group(1))
    return value / 1024 if m.group(2) == "Mi" else value


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bad(message: str, code: str = "InvalidTemplate") -> HttpError:
    return HttpError(400, code, message)


class DeploymentEngine:
    def __init__(self, store: Store, handlers: ResourceHandlers, faults: Faults, *, op_delay_s: float,
                 tenant_id: str) -> None:
        self.store, self.handlers, self.faults = store, handlers, faults
        self.op_delay_s = op_delay_s
        self.tenant_id = tenant_id
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # -- planning ------------------------------------------------------------------------
    def _context(self, sub: str, group: str, name: str, template: dict, given: dict, lenient: bool) -> Context:
        g = self.store.group(sub, group)
        if g is None:
            raise HttpError(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
        return Context(sub, g["name"], g["location"], name, template, dict(given),
                       reference=self.handlers.reference, list_keys=self.handlers.list_keys,
                       tenant_id=self.tenant_id, lenient=lenient)

    def _parse_body(self, body: dict) -> tuple[dict, dict, str]:
        props = (body or {}).get("properties") or {}
        if props.get("templateLink"):
            raise _bad("The local cloud cannot fetch templateLink; send the template inline.", "InvalidRequestContent")
        template = props.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("resources", []), list):
            raise _bad("The request has no template, or its resources are not a list.", "InvalidRequestContent")
        given = {}
        for k, v in (props.get("parameters") or {}).items():
            if not isinstance(v, dict) or "value" not in v:
                raise _bad(f"The parameter '{k}' has no value (Key Vault references are not supported locally).")
            given[k] = v["value"]
        unknown = [k for k in given if k.lower() not in {p.lower() for p in template.get("parameters", {})}]
        if unknown:
            raise _bad("The following parameters were supplied, but do not correspond to any parameters defined in "
                       f"the template: '{', '.join(unknown)}'.")
        return template, given, props.get("mode", "Incremental")

    def _resolve_parameters(self, ctx: Context) -> dict[str, Any]:
        values = {}
        for name, decl in ctx.template.get("parameters", {}).items():
            v = ctx.parameter(name)
            t = str(decl.get("type", "string")).lower()
            py = _PY.get(t)
            if py and not (isinstance(v, py) and not (py is int and isinstance(v, bool))):
                raise TemplateError(f"Template parameter '{name}' has the wrong type: expected '{_TYPES[t]}', "
                                    f"got '{type(v).__name__}'.")
            allowed = decl.get("allowedValues")
            if allowed is not None and v not in allowed:
                raise TemplateError(f"The provided value '{v}' for the template parameter '{name}' is not valid. "
                                    f"The parameter value is not part of the allowed value(s): '{','.join(map(str, allowed))}'.")
            if isinstance(v, int) and ("minValue" in decl and v < decl["minValue"] or "maxValue" in decl and v > decl["maxValue"]):
                raise TemplateError(f"The value {v} of template parameter '{name}' is out of its allowed range.")
            values[name] = v
        return values

    def _plan(self, ctx: Context) -> list[tuple[dict, ResourceRef]]:
        items: list[tuple[dict, ResourceRef, list]] = []
        for decl in ctx.template.get("resources", []):
            if decl.get("copy"):
                raise TemplateError("copy loops are not supported by the local cloud.")
            if "condition" in decl and not evaluate(decl["condition"], ctx):
                continue
            name = evaluate(decl["name"], ctx)
            try:
                ref = make_ref(ctx.subscription_id, ctx.group_name, decl["type"], name.split("/"))
            except ValueError as e:
                raise TemplateError(f"The resource '{decl['type']}' named '{name}' is malformed: {e}") from None
            items.append((decl, ref, evaluate(decl.get("dependsOn", []), ctx)))
        index = {ref.id.lower(): i for i, (_, ref, _) in enumerate(items)}
        by_name = {ref.full_name.lower(): i for i, (_, ref, _) in enumerate(items)}
        deps: list[set[int]] = []
        for _, ref, dep_list in items:
            found = set()
            for d in dep_list:
                d = str(d).lower()
                j = index.get(d, by_name.get(d, by_name.get(d.split("/", 2)[-1] if d.count("/") >= 2 else d)))
                if j is not None:
                    found.add(j)
            deps.append(found)
        order, ready, done = [], [i for i in range(len(items)) if not deps[i]], set()
        heapq.heapify(ready)
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            done.add(i)
            for j in range(len(items)):
                if j not in done and j not in ready and deps[j] <= done:
                    heapq.heappush(ready, j)
        if len(order) != len(items):
            raise TemplateError("Deployment template validation failed: circular dependency between resources.")
        return [(items[i][0], items[i][1]) for i in order]

    def _preflight(self, sub: str, group: str, name: str, body: dict):
        template, given, mode = self._parse_body(body)
        ctx = self._context(sub, group, name, template, given, lenient=True)
        try:
            values = self._resolve_parameters(ctx)
            plan = self._plan(ctx)
        except TemplateError as e:
            raise _bad(e.message, e.code) from None
        for decl, ref in plan:
            err = self.handlers.name_error(ref)
            if err:
                raise err
            version = str(decl.get("apiVersion") or "")
            if not providers.serves(ref.namespace, version):
                raise providers.no_registered_provider(ref.namespace, "/".join(ref.types), version,
                                                       str(evaluate(decl.get("location"), ctx) or ctx.group_location))
            if not self.faults.is_registered(ref.namespace):
                raise providers.missing_registration(ref.namespace)
        for decl, ref in plan:
            if ref.is_type(CONTAINER_APPS):
                cause = self._resource_total_error(ctx, plan, decl, ref) or _probe_error(ctx, decl)
                if cause:
                    raise providers.validation_failed(name, cause)
        return template, given, mode, ctx, values, plan

    def _workload_profile_type(self, ctx: Context, plan: list, env_id: str, profile_name: str) -> str | None:
        """The type of workload profile ``profile_name`` of environment ``env_id``: from the
        template when it declares the environment, else from the environment as it is."""
        profiles = None
        for decl, ref in plan:
            if ref.is_type(ENVIRONMENTS) and ref.id.lower() == env_id.lower():
                profiles = evaluate((decl.get("properties") or {}).get("workloadProfiles"), ctx)
        if profiles is None:
            existing = self.store.resource(env_id)
            profiles = ((existing or {}).get("properties") or {}).get("workloadProfiles")
        for p in profiles or []:
            if isinstance(p, dict) and str(p.get("name", "")).lower() == profile_name.lower():
                return str(p.get("workloadProfileType") or "")
        return None

    def _resource_total_error(self, ctx: Context, plan: list, decl: dict, ref: ResourceRef) -> dict | None:
        """ContainerAppInvalidResourceTotal when the app's containers ask for more than its
        workload profile offers (Azure refuses it at pre-flight, nested; Azure/bicep#14569)."""
        props = evaluate(decl.get("properties") or {}, ctx)
        profile_name = props.get("workloadProfileName")
        env_id = props.get("environmentId") or props.get("managedEnvironmentId")
        if not isinstance(profile_name, str) or not isinstance(env_id, str):
            return None
        ptype = self._workload_profile_type(ctx, plan, env_id, profile_name)
        size = PROFILE_SIZES.get((ptype or "").lower())
        if size is None:
            return None
        cpu = mem = 0.0
        for c in (props.get("template") or {}).get("containers") or []:
            res = (c or {}).get("resources") or {}
            cpu += _number(res.get("cpu")) or 0.0
            mem += _gib(res.get("memory")) or 0.0
        max_cpu, max_gib = size
        if cpu <= max_cpu and mem <= max_gib:
            return None
        return {"code": "ContainerAppInvalidResourceTotal",
                "message": f"The total requested CPU and memory resources for this application (CPU: {cpu:g}, "
                           f"memory: {mem:g}) is invalid. Total CPU and memory for all containers defined in a "
                           f"Container App must not exceed the size of workload profile '{profile_name}' "
                           f"({ptype}): CPU {max_cpu}, memory {max_gib}Gi."}

    # -- validate / what-if --------------------------------------------------------------
    def validate(self, sub: str, group: str, name: str, body: dict) -> dict:
        template, _, mode, _, values, plan = self._preflight(sub, group, name, body)
        return {"id": self._id(sub, group, name), "name": name, "type": "Microsoft.Resources/deployments",
                "properties": {"provisioningState": "Succeeded", "timestamp": now_iso(), "mode": mode,
                               "templateHash": template_hash(template),
                               "parameters": self._param_view(template, values),
                               "validatedResources": [{"id": ref.id} for _, ref in plan]}}

    def what_if(self, sub: str, group: str, name: str, body: dict) -> dict:
        _, _, _, ctx, _, plan = self._preflight(sub, group, name, body)
        changes, seen = [], set()
        for decl, ref in plan:
            seen.add(ref.id.lower())
            desired = {k: evaluate(decl[k], ctx) for k in ("location", "sku", "kind", "tags", "properties") if k in decl}
            after = {"id": ref.id, "name": ref.full_name, "type": ref.full_type, "apiVersion": decl.get("apiVersion"),
                     **desired}
            existing = self.store.resource(ref.id)
            if existing is None:
                changes.append({"resourceId": ref.id, "changeType": "Create", "after": after})
                continue
            before = {"id": existing["id"], "name": ref.full_name, "type": existing["type"],
                      "apiVersion": decl.get("apiVersion"), **existing.get("spec", {})}
            delta = _diff(existing.get("spec", {}), desired)
            changes.append({"resourceId": existing["id"], "changeType": "Modify" if delta else "NoChange",
                            "before": before, "after": after, "delta": delta})
        for r in self.store.resources(f"/subscriptions/{sub}/resourceGroups/{group}"):
            if r["id"].lower() not in seen:
                changes.append({"resourceId": r["id"], "changeType": "Ignore", "before": self.handlers.view(r)})
        return {"status": "Succeeded", "properties": {"changes": changes}}

    # -- running ---------------------------------------------------------------------------
    @staticmethod
    def _id(sub: str, group: str, name: str) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Resources/deployments/{name}"

    def start(self, sub: str, group: str, name: str, body: dict) -> tuple[dict, bool]:
        template, given, mode, _, values, plan = self._preflight(sub, group, name, body)
        for _, ref in plan:
            fault = self.faults.take_resource(ref.full_name, ref.full_type, at="preflight")
            if fault:
                raise providers.validation_failed(name, {
                    "code": fault.option("code", "MaxRegionalQuotaExceeded"),
                    "message": fault.option("message", f"The resource '{ref.full_name}' was refused at validation "
                                                       "(fault injected by the local cloud).")})
        old = self.store.deployment(sub, group, name)
        if old and old["state"] in ACTIVE:
            raise HttpError(409, "DeploymentActive", f"The deployment '{name}' is still active; wait for it or cancel it.")
        record = {
            "subscription": sub, "group": self.store.group(sub, group)["name"], "name": name,
            "run_id": secrets.token_hex(8).upper(), "correlation_id": str(uuid.uuid4()),
            "state": "Accepted", "mode": mode, "template": template, "given": given, "values": values,
            "started": time.time(), "finished": None, "timestamp": now_iso(), "outputs": None, "error": None,
            "operations": [], "output_resources": [],
            "tags": {str(k): str(v) for k, v in ((body or {}).get("tags") or {}).items()},
        }
        self.store.put_deployment(record)
        self._launch(record)
        return self.view(record), old is None

    def _launch(self, record: dict) -> None:
        key = Store.deployment_key(record["subscription"], record["group"], record["name"])
        with self._lock:
            t = threading.Thread(target=self._run, args=(record["subscription"], record["group"], record["name"]),
                                 name=f"aitk-deploy-{record['name']}", daemon=True)
            self._threads[key] = t
            self._cancel.discard(key)
        t.start()

    def resume_all(self) -> None:
        for d in self.store.get("deployments", {}).values():
            if d.get("state") in ACTIVE:
                log.info("resuming deployment %s/%s", d["group"], d["name"])
                self._launch(d)

    def cancel(self, sub: str, group: str, name: str) -> bool:
        d = self.store.deployment(sub, group, name)
        if d is None or d["state"] not in ACTIVE:
            return False
        with self._lock:
            self._cancel.add(Store.deployment_key(sub, group, name))
        return True

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout=5)

    def _update(self, sub: str, group: str, name: str, **values: Any) -> dict:
        values.setdefault("timestamp", now_iso())
        return self.store.update_deployment(sub, group, name, **values)

    def _set_op(self, sub: str, group: str, name: str, op: dict, **values: Any) -> None:
        with self.store.lock:
            d = self.store.deployment(sub, group, name)
            ops = d["operations"]
            for i, o in enumerate(ops):
                if o["operationId"] == op["operationId"]:
                    o.update(values, timestamp=now_iso())
                    o["duration"] = iso_duration(time.time() - o["started"])
                    op.update(o)
                    break
            else:
                op.update(values, timestamp=now_iso(), duration=iso_duration(0))
                ops.append(op)
            self._update(sub, group, name, operations=ops)

    def _wait(self, key: str) -> str | None:
        """Sleep one step; 'stop' when the server stops, 'cancel' when cancelled."""
        if self._stop.wait(self.op_delay_s):
            return "stop"
        with self._lock:
            return "cancel" if key in self._cancel else None

    def _run(self, sub: str, group: str, name: str) -> None:
        key = Store.deployment_key(sub, group, name)
        try:
            self._run_inner(sub, group, name, key)
        except Exception as e:  # noqa: BLE001 - a crash must fail the deployment, not hang it
            log.exception("deployment %s crashed", name)
            self._finish(sub, group, name, "Failed", {"code": "InternalServerError",
                                                      "message": f"The local cloud failed: {type(e).__name__}: {e}"})

    def _finish(self, sub: str, group: str, name: str, state: str, error: dict | None = None,
                outputs: dict | None = None) -> None:
        self._update(sub, group, name, state=state, finished=time.time(), error=error, outputs=outputs)

    def _run_inner(self, sub: str, group: str, name: str, key: str) -> None:
        rec = self.store.deployment(sub, group, name)
        self._update(sub, group, name, state="Running")
        ctx = self._context(sub, group, name, rec["template"], rec["given"], lenient=False)
        try:
            plan = self._plan(ctx)
        except TemplateError as e:
            return self._finish(sub, group, name, "Failed", {"code": e.code, "message": e.message})
        earlier = {o["resourceId"].lower(): o for o in rec["operations"] if o.get("resourceId")}
        for decl, ref in plan:
            op = earlier.get(ref.id.lower())
            if op is not None and op.get("provisioningState") == "Succeeded":
                continue
            if op is None:
                op = {"operationId": secrets.token_hex(8).upper(), "resourceId": ref.id, "resourceType": ref.full_type,
                      "resourceName": ref.full_name, "apiVersion": decl.get("apiVersion"), "started": time.time(),
                      "trackingId": str(uuid.uuid4()), "provisioningOperation": "Create"}
                self._set_op(sub, group, name, op, provisioningState="Accepted")
            # else: an operation interrupted by a server stop continues where it was
            for next_state in ("Running", None):
                why = self._wait(key)
                if why == "stop":
                    return  # left Running: resumed on the next start
                if why == "cancel":
                    self._set_op(sub, group, name, op, provisioningState="Canceled")
                    return self._finish(sub, group, name, "Canceled")
                if next_state:
                    self._set_op(sub, group, name, op, provisioningState=next_state)
            fault = self.faults.take_resource(ref.full_name, ref.full_type)
            error = None
            if fault:  # accepted, then the provider reached Failed: ARM wraps its error once more
                error = {"code": "ResourceDeploymentFailure", "target": ref.id, "message": TERMINAL_FAILED,
                         "details": [{"code": fault.option("code", "InternalServerError"),
                                      "message": fault.option("message", f"The resource '{ref.full_name}' failed to "
                                                              "provision (fault injected by the local cloud).")}]}
            else:
                try:
                    body = evaluate({k: v for k, v in decl.items() if k not in ("dependsOn", "condition")}, ctx)
                    _, created = self.handlers.put(ref, body)
                except (TemplateError, Unresolved) as e:
                    error = {"code": getattr(e, "code", "InvalidTemplate"),
                             "message": getattr(e, "message", f"The resource '{e}' was not found.")}
                except HttpError as e:
                    error = {"code": e.code, "message": e.message}
            if error:
                self._set_op(sub, group, name, op, provisioningState="Failed", statusCode="BadRequest",
                             statusMessage={"status": "Failed", "error": error})
                return self._finish(sub, group, name, "Failed", {"code": "DeploymentFailed", "message": DEPLOYMENT_FAILED,
                                                                 "details": [error]})
            self._set_op(sub, group, name, op, provisioningState="Succeeded", statusCode="Created" if created else "OK",
                         statusMessage={"status": "Succeeded"})
            self._update(sub, group, name, output_resources=[*self.store.deployment(sub, group, name)["output_resources"],
                                                             {"id": ref.id}])
        try:
            outputs = {k: {"type": _TYPES.get(str(v.get("type", "string")).lower(), "String"),
                           "value": evaluate(v.get("value"), ctx)} for k, v in rec["template"].get("outputs", {}).items()}
        except (TemplateError, Unresolved) as e:
            err = {"code": "DeploymentOutputEvaluationFailed", "message": getattr(e, "message", str(e))}
            return self._finish(sub, group, name, "Failed", err)
        self._set_op(sub, group, name, {"operationId": secrets.token_hex(8).upper(), "started": time.time(),
                                        "trackingId": str(uuid.uuid4()), "provisioningOperation": "EvaluateDeploymentOutput"},
                     provisioningState="Succeeded", statusCode="OK", statusMessage={"status": "Succeeded"})
        self._finish(sub, group, name, "Succeeded", outputs=outputs)

    # -- views -----------------------------------------------------------------------------
    @staticmethod
    def _param_view(template: dict, values: dict) -> dict:
        out = {}
        for k, v in values.items():
            t = _TYPES.get(str(template.get("parameters", {}).get(k, {}).get("type", "string")).lower(), "String")
            out[k] = {"type": t} if t.startswith("Secure") else {"type": t, "value": v}
        return out

    def view(self, d: dict) -> dict:
        end = d["finished"] or time.time()
        props = {
            "provisioningState": d["state"], "timestamp": d["timestamp"], "duration": iso_duration(end - d["started"]),
            "correlationId": d["correlation_id"], "mode": d["mode"], "templateHash": template_hash(d["template"]),
            "parameters": self._param_view(d["template"], d.get("values") or {}),
            "outputResources": d.get("output_resources") or [], "providers": [], "dependencies": [],
        }
        if d.get("outputs") is not None:
            props["outputs"] = d["outputs"]
        if d.get("error"):
            props["error"] = d["error"]
        return {"id": self._id(d["subscription"], d["group"], d["name"]), "name": d["name"],
                "type": "Microsoft.Resources/deployments", "tags": d.get("tags") or {}, "properties": props}

    def operations_view(self, d: dict) -> list[dict]:
        out = []
        for o in d["operations"]:
            props = {k: o[k] for k in ("provisioningOperation", "provisioningState", "timestamp", "duration",
                                       "statusCode", "statusMessage") if o.get(k) is not None}  # as the spec lists
            props["serviceRequestId"] = o["trackingId"]
            if o.get("resourceId"):
                props["targetResource"] = {"id": o["resourceId"], "resourceType": o["resourceType"],
                                           "resourceName": o["resourceName"], "apiVersion": o.get("apiVersion")}
            out.append({"id": f"{self._id(d['subscription'], d['group'], d['name'])}/operations/{o['operationId']}",
                        "operationId": o["operationId"], "properties": props})
        return out


def _diff(before: dict, after: dict, path: str = "") -> list[dict]:
    """What-if property changes of ``after`` against ``before`` (keys only ``after`` names)."""
    out = []
    for k, v in after.items():
        p = f"{path}.{k}" if path else k
        if k not in before:
            out.append({"path": p, "propertyChangeType": "Create", "after": v})
        elif isinstance(v, dict) and isinstance(before[k], dict):
            out.extend(_diff(before[k], v, p))
        elif v != before[k]:
            out.append({"path": p, "propertyChangeType": "Modify", "before": before[k], "after": v})
    return out


# Azure's own bound for a probe's failureThreshold (the spec's text says 10; Azure answers 1-30):
# microsoft/azure-container-apps#1100 quotes the refusal of a PUT with failureThreshold 48.
PROBE_FAILURE_THRESHOLD = (1, 30)


def _probe_error(ctx: Context, decl: dict) -> dict | None:
    """ContainerAppProbeFailureThresholdOutOfRange for a probe Azure would refuse (the template
    once asked for 120: every real provision would have failed while the local cloud took it)."""
    props = evaluate(decl.get("properties") or {}, ctx)
    low, high = PROBE_FAILURE_THRESHOLD
    for c in (props.get("template") or {}).get("containers") or []:
        for probe in (c or {}).get("probes") or []:
            value = (probe or {}).get("failureThreshold")
            if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
                return {"code": "ContainerAppProbeFailureThresholdOutOfRange",
                        "message": f"Container '{c.get('name')}' '{probe.get('type')}' probe's FailureThreshold "
                                   f"must be in the range of ['{low}', '{high}']."}
    return None
