"""What-if and provisioning (the ARM deployment of ``inference.json``); the pre-flight is ``preflight.py``.

``provision`` submits one resource-group deployment named after the project
(``aitk-inference-<project id>``, see :mod:`.ownership`), or re-attaches to it when a previous run left it running
(aitk crashed, Ctrl-C, a dropped ssh session), follows ``deployment_operations`` while the
SDK's LRO poller waits, and yields one ``ResourceProgress`` per resource state change.
On success it writes ``infra/inference.config.json`` atomically from the outputs; on
failure or cancellation that file is left exactly as it was.

The inference API key is a template ``securestring``: it is reused from the existing
app (listSecrets) so that a re-provision does not break clients, or freshly generated;
it is only ever sent in the deployment body, never written to the parameters or config.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ..config.inference_config import KEYS, InferenceConfig
from ..errors import AitkError, redact, register_secret
from ..events import Done, Event, Failed, Info, ResourceProgress
from . import armerrors
from .models import Change, Provisioned, WhatIf, enum_text, pick
from .ownership import PROJECT_PARAMETER, PROJECT_TAG, deployment_name, output, resolve_project_id, stored_project_id
from .preflight import preflight
from .sdkerrors import describe, failed, is_not_found, is_unsupported

if TYPE_CHECKING:
    from ..config.parameters import ParametersDocument
    from .context import OperationContext

ACTIVE_STATES = frozenset({"Accepted", "Running", "Creating", "Updating", "Deploying", "Waiting", "Validating"})
TERMINAL_STATES = frozenset({"Succeeded", "Failed", "Canceled"})

# Template resource type -> (name parameter, AI Toolkit default prefix); for what-if estimates.
_NAMES = {
    "Microsoft.Storage/storageAccounts": ("storageAccountName", "aistorage"),
    "Microsoft.Storage/storageAccounts/fileServices/shares": ("fileShareName", "aifileshare"),
    "Microsoft.OperationalInsights/workspaces": ("acaLogAnalyticsName", "ailog"),
    "Microsoft.App/managedEnvironments": ("acaEnvironmentName", "aienv"),
    "Microsoft.App/managedEnvironments/storages": ("acaEnvironmentStorageName", "aienvstorage"),
    "Microsoft.App/containerApps": ("acaAppName", "aiacaapp"),
}


def _resource_names(params: "ParametersDocument") -> dict[str, str]:
    """Resource type -> the name the parameters give it (for naming a refused resource)."""
    return {rtype: str(params.get(param)) for rtype, (param, _prefix) in _NAMES.items() if params.get(param)}


def _arm_parameters(params: "ParametersDocument", api_key: str, template: dict[str, Any] | None = None,
                    project_id: str | None = None) -> dict[str, Any]:
    out = params.arm_parameters()
    out["inferenceApiKey"] = {"value": api_key}
    # The tag's value, where the template has the parameter (a project's older copy may not).
    if project_id and PROJECT_PARAMETER in ((template or {}).get("parameters") or {}):
        out[PROJECT_PARAMETER] = {"value": project_id}
    return out


def _deployment_body(template: dict[str, Any], params: "ParametersDocument", api_key: str,
                     project_id: str) -> dict[str, Any]:
    return {"tags": {PROJECT_TAG: project_id},
            "properties": {"mode": "Incremental", "template": template,
                           "parameters": _arm_parameters(params, api_key, template, project_id)}}


def _project_deployment(session: "OperationContext", client: Any, resource_group: str) -> tuple[str, str]:
    """(project id, deployment name): the stored id, else the one of this project's deployment
    in the group (provisioned from another clone), else a new one; stored in .aitk/state.json."""
    config: InferenceConfig | None
    try:
        config = InferenceConfig.load(session.project.config_path)
    except AitkError:
        config = None
    listed = [] if stored_project_id(session.project) else list(client.deployments.list_by_resource_group(resource_group))
    try:
        project_id = resolve_project_id(session.project, listed, config)
    except OSError as e:
        raise AitkError("Could not record this project's id in .aitk/state.json; nothing was provisioned.",
                        str(e)) from None
    return project_id, deployment_name(project_id)


# -- what-if -------------------------------------------------------------------------------
def _parse_resource_id(resource_id: str) -> tuple[str, str]:
    """'/subscriptions/../providers/Microsoft.App/containerApps/x' -> (type, name)."""
    parts = [p for p in (resource_id or "").split("/") if p]
    try:
        i = max(i for i, p in enumerate(parts) if p.lower() == "providers")
    except ValueError:
        return "", resource_id
    rest = parts[i + 1:]
    if not rest:
        return "", resource_id
    namespace, pairs = rest[0], rest[1:]
    types = pairs[0::2]
    names = pairs[1::2]
    return f"{namespace}/{'/'.join(types)}", "/".join(names)


def _what_if_api(session: "OperationContext", subscription_id: str, resource_group: str,
                 template: dict[str, Any], params: "ParametersDocument") -> list[Change]:
    client = session.factory.deployments(subscription_id)
    project_id, name = _project_deployment(session, client, resource_group)
    # The app's own key (when it exists) so that an unchanged app previews as NoChange.
    key = _existing_api_key(session, subscription_id, resource_group, params,
                            get_deployment(client, resource_group, name))
    if not key:
        key = secrets.token_urlsafe(32)
        register_secret(key)
    body = _deployment_body(template, params, key, project_id)
    body.pop("tags")  # what-if takes properties only
    result = client.deployments.begin_what_if(resource_group, name, body).result()
    changes = []
    for change in pick(result, "changes", default=[]) or []:
        rtype, name = _parse_resource_id(str(pick(change, "resource_id", default="")))
        changes.append(Change(enum_text(pick(change, "change_type")) or "Unknown",
                              str(pick(change, "resource_type", default=None) or rtype), name))
    return changes


def _estimate_changes(session: "OperationContext", subscription_id: str, resource_group: str,
                      template: dict[str, Any], params: "ParametersDocument") -> list[Change]:
    """What-if without the API: compare the template's resources with the group's."""
    existing: dict[str, list[str]] = {}
    for r in session.factory.resources(subscription_id).resources.list_by_resource_group(resource_group):
        existing.setdefault(str(pick(r, "type", default="")).lower(), []).append(str(pick(r, "name", default="")))
    values = params.values()
    changes = []
    for res in template.get("resources", []):
        rtype = str(res.get("type", ""))
        if rtype not in _NAMES:
            continue
        param, prefix = _NAMES[rtype]
        name = values.get(param)
        top_type = "/".join(rtype.split("/")[:2])
        candidates = existing.get(top_type.lower(), [])
        if top_type == rtype:
            if not name:
                name = next((c for c in candidates if c.startswith(prefix)), None) or f"{prefix}<suffix>"
            change = "Modify" if name in candidates else "Create"
        else:
            name = name or f"{prefix}<suffix>"
            change = "Modify" if candidates else "Create"
        changes.append(Change(change, rtype, name))
    return changes


# ARM's change types, in the order a person reads them, as words.
_CHANGE_WORDS = {"Create": "to create", "Modify": "to modify", "Deploy": "to deploy again", "Delete": "to delete",
                 "NoChange": "unchanged", "Ignore": "ignored", "Unsupported": "that what-if cannot preview"}


def what_if_summary(changes: "Sequence[Change]") -> str:
    """'3 to create, 1 to modify, 3 unchanged'; '7 resources unchanged' when nothing changes."""
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.change_type] = counts.get(c.change_type, 0) + 1
    if not counts:
        return "no resources in the template"
    if set(counts) == {"NoChange"}:
        n = counts["NoChange"]
        return f"{n} resource{'' if n == 1 else 's'} unchanged"
    order = list(_CHANGE_WORDS) + sorted(set(counts) - set(_CHANGE_WORDS))
    return ", ".join(f"{counts[t]} {_CHANGE_WORDS.get(t, t.lower())}" for t in order if t in counts)


async def what_if(session: "OperationContext", subscription_id: str, resource_group: str,
                  params: "ParametersDocument") -> AsyncIterator[Event]:
    try:
        checked: dict[str, Any] = {}
        async for event in preflight(session, subscription_id, resource_group, params, checked):
            yield event
        template = checked["template"]
        estimated = False
        try:
            changes = await asyncio.to_thread(_what_if_api, session, subscription_id, resource_group, template, params)
        except Exception as e:  # noqa: BLE001
            if not is_unsupported(e):
                raise
            estimated = True
            yield Info("This cloud has no what-if API; estimating from the resources in the group.", "warning")
            changes = await asyncio.to_thread(_estimate_changes, session, subscription_id, resource_group,
                                              template, params)
    except Exception as e:  # noqa: BLE001
        yield failed(e, "preview the deployment")
        return
    summary = what_if_summary(changes)
    yield Done(f"What-if{' (estimated)' if estimated else ''}: {summary}",
               result=WhatIf(tuple(changes), estimated))


# -- provision -----------------------------------------------------------------------------
def _existing_api_key(session: "OperationContext", subscription_id: str, resource_group: str,
                      params: "ParametersDocument", previous: Any) -> str | None:
    """The running app's inference-api-key, so that re-provisioning keeps clients working."""
    names = [params.get("acaAppName"), output(previous, "ACA_APP_NAME")]
    try:
        cfg = InferenceConfig.load(session.project.config_path)
        if cfg.SUBSCRIPTION_ID == subscription_id and cfg.RESOURCE_GROUP_NAME == resource_group:
            names.append(cfg.ACA_APP_NAME)
    except AitkError:
        pass
    from .health import read_api_key_secret

    client = session.factory.container_apps(subscription_id)
    for name in dict.fromkeys(n for n in names if n):
        try:
            key = read_api_key_secret(client, resource_group, name)
        except Exception as e:  # noqa: BLE001
            if is_not_found(e):
                continue
            raise
        if key is not None:
            return key
    return None


def get_deployment(client: Any, resource_group: str, name: str) -> Any | None:
    try:
        return client.deployments.get(resource_group, name)
    except Exception as e:  # noqa: BLE001
        if is_not_found(e):
            return None
        raise


def _state_of(deployment: Any) -> str | None:
    return enum_text(pick(deployment, "properties", "provisioning_state"))


def _status_text(status_message: Any) -> str | None:
    """statusMessage as one line: the deepest cause(s) of its error (ARM nests the provider's
    error under ResourceDeploymentFailure), else its status."""
    if status_message is None:
        return None
    if isinstance(status_message, str):
        try:
            status_message = json.loads(status_message)
        except ValueError:
            return status_message
    err = pick(status_message, "error") or status_message
    if pick(err, "code") or pick(err, "message") or pick(err, "details"):
        text = armerrors.causes_text(err)
        if text:
            return text
    status = pick(status_message, "status")
    return str(status) if status else json.dumps(status_message, default=str)[:500]


def _failure(deployment: Any, ops: list[dict[str, Any]], state: str | None) -> tuple[str, str | None]:
    """(message, detail) of a deployment that did not succeed: each failed resource with the
    deepest cause of its failure, and what to do where aitk knows."""
    error = pick(deployment, "properties", "error") if deployment is not None else None
    parts, hints = [], []
    for op in ops:
        if op["state"] != "Failed":
            continue
        label = f"{op['type']} '{op['name']}'"
        text, hint, _found = armerrors.explain(op.get("error") or {"message": op["message"] or "no message"},
                                              resource=label)
        parts.append(text)
        hints.append(hint)
    if not parts and error is not None:
        text, hint, _found = armerrors.explain(error)
        parts.append(text)
        hints.append(hint)
    detail = armerrors.chain(error) if error is not None else None
    if error is not None:
        top = armerrors.first_line(pick(error, "message"))
        detail = f"{detail}; {top}" if detail and top else detail or top
    if not parts:
        return (f"Provisioning {state.lower() if state else 'failed'}; inference.config.json was not changed.",
                detail)
    hint_text = " ".join(dict.fromkeys(h for h in hints if h))
    return f"Provisioning failed: {' '.join(parts)}" + (f" {hint_text}" if hint_text else ""), detail


def _status_error(status_message: Any) -> Any:
    """The error object of a statusMessage (a dict, a JSON string, or an SDK model), or None."""
    if isinstance(status_message, str):
        try:
            status_message = json.loads(status_message)
        except ValueError:
            return None
    return pick(status_message, "error")


def _operations(client: Any, resource_group: str, name: str) -> list[dict[str, Any]]:
    rows = []
    for op in client.deployment_operations.list(resource_group, name):
        target = pick(op, "properties", "target_resource")
        if target is None:
            continue  # deployment-level steps (e.g. output evaluation) name no resource
        rows.append({
            "type": str(pick(target, "resource_type", default="")),
            "name": str(pick(target, "resource_name", default="")),
            "state": enum_text(pick(op, "properties", "provisioning_state")) or "Unknown",
            "message": _status_text(pick(op, "properties", "status_message")),
            "error": _status_error(pick(op, "properties", "status_message")),
        })
    return rows


async def provision(session: "OperationContext", subscription_id: str, resource_group: str,
                    params: "ParametersDocument") -> AsyncIterator[Event]:
    try:
        checked: dict[str, Any] = {}
        async for event in preflight(session, subscription_id, resource_group, params, checked):
            yield event
        template = checked["template"]
        client = await asyncio.to_thread(session.factory.deployments, subscription_id)
        project_id, name = await asyncio.to_thread(_project_deployment, session, client, resource_group)
        previous = await asyncio.to_thread(get_deployment, client, resource_group, name)
        poller = None
        if previous is not None and _state_of(previous) in ACTIVE_STATES:
            yield Info(f"Deployment {name} is already {_state_of(previous)}; following it "
                       "instead of starting another.")
        else:
            api_key = await asyncio.to_thread(_existing_api_key, session, subscription_id, resource_group,
                                              params, previous)
            if api_key:
                yield Info("Keeping the app's existing API key.")
            else:
                api_key = secrets.token_urlsafe(32)
                register_secret(api_key)
            body = _deployment_body(template, params, api_key, project_id)
            poller = await asyncio.to_thread(client.deployments.begin_create_or_update,
                                             resource_group, name, body)
            yield Info(f"Submitted deployment {name} to {resource_group}.")
    except Exception as e:  # noqa: BLE001
        yield failed(e, "start provisioning", _resource_names(params))
        return

    async for event in _follow(session, client, resource_group, poller, subscription_id, name):
        yield event


async def _follow(session: "OperationContext", client: Any, resource_group: str, poller: Any,
                  subscription_id: str, name: str) -> AsyncIterator[Event]:
    start = time.monotonic()
    seen: dict[tuple[str, str], str] = {}
    ops: list[dict[str, Any]] = []
    warned = False
    deployment: Any = None
    error_detail: str | None = None
    while True:
        finished = False
        try:
            if poller is not None:
                finished = poller.done()
            else:
                deployment = await asyncio.to_thread(get_deployment, client, resource_group, name)
                finished = _state_of(deployment) in TERMINAL_STATES
        except Exception as e:  # noqa: BLE001 - the SDK already retried; keep following
            if not warned:
                warned = True
                yield Info(f"Lost contact with Azure for a moment; still following ({describe(e, 'poll').detail}).",
                           "warning")
        try:
            ops = await asyncio.to_thread(_operations, client, resource_group, name)
        except Exception:  # noqa: BLE001 - progress rows are best effort; the deployment decides
            pass
        for op in ops:
            key = (op["type"], op["name"])
            if seen.get(key) != op["state"]:
                seen[key] = op["state"]
                yield ResourceProgress(op["type"], op["name"], op["state"], round(time.monotonic() - start, 1),
                                       redact(op["message"]) if op["state"] == "Failed" and op["message"] else None)
        if finished and poller is not None:
            try:
                deployment = await asyncio.to_thread(poller.result)
            except Exception as e:  # noqa: BLE001 - a failed deployment, or a poller that gave up
                error_detail = describe(e, "provision").detail
                # The deployment itself is the authority: the poller may have given up on a
                # transport or auth error while the deployment goes on in Azure.
                try:
                    deployment = await asyncio.to_thread(get_deployment, client, resource_group, name)
                except Exception:  # noqa: BLE001
                    deployment = None
                if deployment is not None and _state_of(deployment) in ACTIVE_STATES:
                    poller, finished, error_detail = None, False, None
                    yield Info("Lost the deployment's status stream; following the deployment directly.",
                               "warning")
        if finished:
            break
        await asyncio.sleep(session.poll_interval_s)

    state = _state_of(deployment) if deployment is not None else "Failed"
    if state != "Succeeded":
        message, detail = _failure(deployment, ops, state)
        yield Failed(redact(message), redact(detail or error_detail) if (detail or error_detail) else None)
        return

    values = {k: output(deployment, k) for k in KEYS}
    missing = [k for k, v in values.items() if not v]
    if missing:
        yield Failed("The deployment succeeded but did not return every output; inference.config.json was not changed.",
                     f"missing: {', '.join(missing)}")
        return
    config = InferenceConfig(**{k: str(v) for k, v in values.items()})
    try:
        await asyncio.to_thread(config.save, session.project.config_path)
    except Exception as e:  # noqa: BLE001
        yield failed(e, "write infra/inference.config.json")
        return
    session.remember(subscription_id=subscription_id, resource_group=resource_group)
    elapsed = time.monotonic() - start
    yield Done(f"Provisioned {config.ACA_APP_NAME} in {resource_group} in {elapsed:.0f} s; endpoint "
               f"{config.endpoint_url}; wrote infra/inference.config.json",
               result=Provisioned(config, round(elapsed, 1)))
