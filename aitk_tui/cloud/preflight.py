"""Provisioning's pre-flight: everything checked before a deployment is sent.

The parameters and the template, the resource group; the resource providers the template
needs (registered and waited for, as ``az provider register --wait`` does, or one sentence
saying how); whether the region offers the GPU profile (and which regions do, where the API
tells); and whether an existing environment was created with another GPU profile (Azure sets
a GPU profile only when an environment is created). A problem raises
:class:`~aitk_tui.errors.AitkError` before anything is created.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..config.naming import GPU_LOCATIONS, GPU_PROFILE_TYPES
from ..errors import AitkError
from ..events import Event, Info
from ..project import require_file
from .models import pick
from .sdkerrors import describe

if TYPE_CHECKING:
    from ..config.parameters import ParametersDocument
    from .context import OperationContext

DEFAULT_GPU_PROFILE = GPU_PROFILE_TYPES[0]
PROVIDER_NAMESPACES = ("Microsoft.App", "Microsoft.OperationalInsights", "Microsoft.Storage")
REGISTER_TIMEOUT_S = 600


def load_template(session: "OperationContext") -> dict[str, Any]:
    path = require_file(session.project.template_path, "ARM template (infra/provision/inference.json)")
    try:
        template = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AitkError("The ARM template is not valid JSON.", f"{path}: {e}") from None
    if not isinstance(template, dict) or "resources" not in template:
        raise AitkError("The ARM template has no resources.", str(path))
    return template


def _check_inputs(session: "OperationContext", subscription_id: str, resource_group: str,
                  params: "ParametersDocument") -> tuple[dict[str, Any], str]:
    """Blocking part of the pre-flight: params, template, resource group. -> (template, location)."""
    if not subscription_id:
        raise AitkError("No subscription chosen.", "pass --subscription ID (see `aitk subscriptions`)")
    if not resource_group:
        raise AitkError("No resource group chosen.", "pass --resource-group NAME (see `aitk groups`)")
    params.validate()
    template = load_template(session)
    unknown = [n for n in params.arm_parameters() if n not in template.get("parameters", {})]
    if unknown:
        raise AitkError(f"The parameters file names {', '.join(unknown)}, which the template does not have.",
                        "remove them or set them to null")
    from .accounts import resource_group_location

    rg_location = resource_group_location(session.factory, subscription_id, resource_group)
    if rg_location is None:
        raise AitkError(f"Resource group {resource_group} does not exist in subscription {subscription_id}.",
                        f"create it with `aitk groups create {resource_group} --location LOCATION`")
    return template, (params.get("location") or rg_location)


def _profile_types(p: Any) -> list[str]:
    """The names one entry of the available-profiles list goes by. Its ``name`` is not always
    its type: Microsoft's own example (AvailableWorkloadProfiles_Get, 2025-01-01) lists the
    entry whose id ends in Dedicated-D8 under the name Dedicated-D4, so the id's last segment
    and the display name count too."""
    out = [str(v) for v in (pick(p, "name"), str(pick(p, "id", default="") or "").rsplit("/", 1)[-1],
                            pick(p, "properties", "display_name")) if v]
    return list(dict.fromkeys(out))


def _gpu_profiles(session: "OperationContext", subscription_id: str, location: str) -> list[str] | None:
    """GPU workload-profile types offered in ``location``; None when the API does not answer."""
    try:
        client = session.factory.container_apps(subscription_id)
        profiles = list(client.available_workload_profiles.get(location))
    except Exception:  # noqa: BLE001 - the check is advisory: any failure means "unknown"
        return None
    names = []
    for p in profiles:
        types = _profile_types(p)
        category = str(pick(p, "properties", "category", default="") or "")
        gpus = pick(p, "properties", "gpus", default=0) or 0
        if types and (any("GPU" in t.upper() for t in types) or "gpu" in category.lower() or gpus):
            names.extend(t for t in types if t not in names)
    return names


def _regions_offering(session: "OperationContext", subscription_id: str, profile: str) -> list[str] | None:
    """Which of the regions known for serverless GPUs offer ``profile``, as the API answers
    now (None when it answers for none of them)."""
    from concurrent.futures import ThreadPoolExecutor

    regions = sorted(GPU_LOCATIONS)
    with ThreadPoolExecutor(max_workers=len(regions)) as pool:
        answers = list(pool.map(lambda r: _gpu_profiles(session, subscription_id, r), regions))
    if all(a is None for a in answers):
        return None
    return [r for r, a in zip(regions, answers) if a and profile in a]


# The GPU model a profile's quota names carry (usage names are not documented; a usage whose
# name holds "gpu" and this model is taken for the profile's quota).
_GPU_MODEL = {"consumption-gpu-nc24-a100": "a100", "consumption-gpu-nc8as-t4": "t4"}


def _gpu_quota_left(session: "OperationContext", subscription_id: str, location: str,
                    profile: str) -> tuple[str, float, float] | None:
    """(usage name, used, limit) of ``profile``'s GPU quota in ``location`` when none is left;
    None when some is left, or when the usages API does not say."""
    model = _GPU_MODEL.get(profile.lower())
    if model is None:
        return None
    try:
        usages = list(session.factory.container_apps(subscription_id).usages.list(location))
    except Exception:  # noqa: BLE001 - advisory: the deployment decides
        return None
    for u in usages:
        name = str(pick(u, "name", "value", default="") or "")
        low = name.lower()
        if "gpu" in low and model in low.replace("nca100", "a100"):
            used, limit = float(pick(u, "current_value", default=0) or 0), float(pick(u, "limit", default=0) or 0)
            if limit - used < 1:
                return name, used, limit
    return None


QUOTA_HOW = ("serverless GPUs also need quota: request it in the Azure portal (Quotas > Azure Container Apps, "
             "or a support request of type 'Service and subscription limits (quotas)')")
GPU_TYPES_LOWER = frozenset(t.lower() for t in GPU_PROFILE_TYPES)


def _ensure_providers(session: "OperationContext", subscription_id: str) -> list[str]:
    """Namespaces the template needs that the subscription has not registered (none when the
    providers API does not answer: the deployment then says so itself)."""
    try:
        client = session.factory.resources(subscription_id)
        return [ns for ns in PROVIDER_NAMESPACES
                if str(pick(client.providers.get(ns), "registration_state", default="")).lower() != "registered"]
    except Exception:  # noqa: BLE001 - advisory, as the GPU check
        return []


def _register(session: "OperationContext", subscription_id: str, namespaces: list[str]) -> None:
    """Register and wait until registered, as ``az provider register --wait`` does."""
    client = session.factory.resources(subscription_id)
    try:
        for ns in namespaces:
            client.providers.register(ns)
        deadline = time.monotonic() + REGISTER_TIMEOUT_S
        pending = list(namespaces)
        while pending:
            pending = [ns for ns in pending
                       if str(pick(client.providers.get(ns), "registration_state", default="")).lower() != "registered"]
            if pending and time.monotonic() > deadline:
                raise AitkError(f"{', '.join(pending)} did not finish registering in {REGISTER_TIMEOUT_S // 60} "
                                "minutes.", "run `aitk provision` again later")
            if pending:
                time.sleep(session.poll_interval_s)
    except AitkError:
        raise
    except Exception as e:  # noqa: BLE001
        cmd = " && ".join(f"az provider register --namespace {ns} --wait" for ns in namespaces)
        raise AitkError(f"The subscription is not registered for {', '.join(namespaces)}, and aitk could not "
                        f"register it: run `{cmd}` (needs Contributor on the subscription).",
                        describe(e, "register the resource providers").detail) from None


def _environment_conflict(session: "OperationContext", subscription_id: str, resource_group: str,
                          params: "ParametersDocument", wanted: str) -> None:
    """Raise, before anything is sent, when the environment the template would update exists
    with another GPU profile: Azure sets a GPU profile only when an environment is created."""
    client = session.factory.container_apps(subscription_id)
    names = [params.get("acaEnvironmentName")]
    if not names[0]:
        try:
            from .ownership import LEGACY_DEPLOYMENT_NAME, deployment_name, stored_project_id
            from .provision import get_deployment

            project_id = stored_project_id(session.project)
            deployments = session.factory.deployments(subscription_id)
            previous = None
            for name in ([deployment_name(project_id)] if project_id else []) + [LEGACY_DEPLOYMENT_NAME]:
                previous = get_deployment(deployments, resource_group, name)
                if previous is not None:
                    break
        except Exception:  # noqa: BLE001
            previous = None
        given = pick(previous, "properties", "parameters", default=None) or {}
        entry = given.get("acaEnvironmentName") if isinstance(given, dict) else None
        names.append(entry.get("value") if isinstance(entry, dict) else pick(entry, "value"))
        if not names[-1]:  # the template's default, aienv + 5 characters (fine-tuning's environment too)
            try:
                names.extend(str(pick(e, "name")) for e in client.managed_environments.list_by_resource_group(
                    resource_group) if re.fullmatch(r"aienv[a-z0-9]{5}", str(pick(e, "name", default=""))))
            except Exception:  # noqa: BLE001 - advisory: the deployment decides
                pass
    for name in dict.fromkeys(n for n in names if n):
        try:
            env = client.managed_environments.get(resource_group, name)
        except Exception:  # noqa: BLE001 - missing (it will be created) or unreadable: ARM decides
            continue
        for wp in pick(env, "properties", "workload_profiles", default=None) or []:
            had = str(pick(wp, "workload_profile_type", default="") or "")
            if had.lower() in GPU_TYPES_LOWER and had.lower() != wanted.lower():
                raise AitkError(
                    f"Environment {name} was created with the GPU profile {had}, and Azure sets a GPU profile "
                    f"only when an environment is created, so it cannot become {wanted}.",
                    f"give the environment a new name (`aitk params set acaEnvironmentName={name}-2`), or delete "
                    f"the old resources first with `aitk down --all`; or set gpuProfileType back to {had}")
        return


async def preflight(session: "OperationContext", subscription_id: str, resource_group: str,
                    params: "ParametersDocument", out: dict[str, Any]) -> AsyncIterator[Event]:
    """Info events; raises AitkError with the first problem. Fills ``out`` with the
    parsed ``template`` and the target ``location``."""
    template, location = await asyncio.to_thread(_check_inputs, session, subscription_id, resource_group, params)
    out.update(template=template, location=location)
    yield Info(f"Parameters are valid; target: resource group {resource_group} in {location}.")
    profile = params.get("gpuProfileType") or DEFAULT_GPU_PROFILE
    unregistered = await asyncio.to_thread(_ensure_providers, session, subscription_id)
    if unregistered:
        yield Info(f"Registering {', '.join(unregistered)} with the subscription (once per subscription, as "
                   "`az` does; it can take a few minutes)...")
        await asyncio.to_thread(_register, session, subscription_id, unregistered)
        yield Info(f"Registered {', '.join(unregistered)}.")
    offered = await asyncio.to_thread(_gpu_profiles, session, subscription_id, location)
    if offered is None:
        yield Info(f"Could not check GPU availability in {location} (this cloud does not answer the "
                   "workload-profiles query); continuing.", "warning")
    elif profile not in offered:
        regions = await asyncio.to_thread(_regions_offering, session, subscription_id, profile)
        if regions is None:
            where = f"serverless GPUs were offered in {', '.join(sorted(GPU_LOCATIONS))} when last checked"
        elif regions:
            where = f"Azure offers it in {', '.join(regions)}"
        else:
            where = f"none of {', '.join(sorted(GPU_LOCATIONS))} offers it to this subscription now"
        example = (regions or sorted(GPU_LOCATIONS))[0]
        offered_there = ", ".join(t for t in offered if t.lower() in GPU_TYPES_LOWER) or "no serverless GPU profile"
        raise AitkError(f"The GPU profile {profile} is not offered in {location} ({offered_there} there); {where}.",
                        f"set location (`aitk params set location={example}`) or gpuProfileType; {QUOTA_HOW}")
    else:
        yield Info(f"GPU profile {profile} is offered in {location}.")
        quota = await asyncio.to_thread(_gpu_quota_left, session, subscription_id, location, profile)
        if quota is not None:
            name, used, limit = quota
            raise AitkError(f"This subscription has no {profile} quota left in {location} ({name}: {used:g} of "
                            f"{limit:g} used), so Azure would refuse the container app.",
                            f"{QUOTA_HOW[0].upper()}{QUOTA_HOW[1:]}; or choose another region")
    await asyncio.to_thread(_environment_conflict, session, subscription_id, resource_group, params, profile)
