"""Scale settings of the container app: read them, change them (keep warm, let it sleep).

A change is one PATCH of ``properties.template.scale`` (JSON merge patch, so the rest of the
app is untouched; no re-provision). The HTTP scale rule's ``concurrentRequests`` is how many
requests one replica takes before ACA adds another; without a rule ACA uses 10. Other scale
rules the app has are kept as they are. A re-provision applies the template's scale again.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config.inference_config import APP_KEYS, InferenceConfig
from ..events import Done, Event, Info
from .clients import ClientFactory
from .prices import CostEstimate, estimate, memory_gib
from .sdkerrors import InputError, describe, failed, failed_event, is_not_found

# ACA's limits: up to 1000 replicas per revision (min may be 0); concurrentRequests >= 1.
MAX_REPLICAS_LIMIT = 1000
MAX_CONCURRENCY = 2**31 - 1  # the API reads the metadata value as a 32-bit integer
DEFAULT_CONCURRENCY = 10
HTTP_RULE_NAME = "http-scaling"


@dataclass(frozen=True)
class ScaleSettings:
    min_replicas: int
    max_replicas: int
    concurrency: int  # concurrent requests per replica before scaling out
    concurrency_is_default: bool  # no HTTP rule on the app: ACA's default applies

    @property
    def keeps_warm(self) -> bool:
        """A replica (and its GPU) bills even with no traffic."""
        return self.min_replicas >= 1


@dataclass(frozen=True)
class AppScale:
    """What ``aitk status`` adds: the scale settings and the cost estimate (None: not priced)."""

    app: str
    settings: ScaleSettings
    profile: str | None
    cost: CostEstimate | None


@dataclass(frozen=True)
class Scaled:
    app: str
    before: ScaleSettings
    after: ScaleSettings
    profile: str | None  # the workload profile type, when it could be read
    cost: CostEstimate | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


class ScaleRequest(BaseModel):
    """What the user asked to change; None keeps the current value."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    min_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS_LIMIT)
    max_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS_LIMIT)
    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> "ScaleRequest":
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min ({self.min_replicas}) is above max ({self.max_replicas})")
        return self

    @classmethod
    def checked(cls, **values: Any) -> "ScaleRequest":
        """The request, or InputError naming the bad value (nothing is sent)."""
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err.get("loc") or ()) or "scale"
            name = {"min_replicas": "--min", "max_replicas": "--max", "concurrency": "--concurrency"}.get(where, where)
            raise InputError(f"{name}: {err['msg'].removeprefix('Value error, ')}.",
                             f"replicas 0..{MAX_REPLICAS_LIMIT} with min <= max; concurrency at least 1") from None

    def apply(self, current: ScaleSettings) -> ScaleSettings:
        lo = current.min_replicas if self.min_replicas is None else self.min_replicas
        hi = current.max_replicas if self.max_replicas is None else self.max_replicas
        if lo > hi:
            if self.max_replicas is None:
                raise InputError(f"--min {lo} is above the app's max replicas ({hi}).", f"also pass --max {lo} or more")
            raise InputError(f"--max {hi} is below the app's min replicas ({lo}).", f"also pass --min {hi} or less")
        conc = current.concurrency if self.concurrency is None else self.concurrency
        return ScaleSettings(lo, hi, conc, current.concurrency_is_default and self.concurrency is None)


# -- reading -------------------------------------------------------------------------------------
def app_json(factory: ClientFactory, config: InferenceConfig) -> dict[str, Any] | None:
    """The app as ARM's REST JSON (camelCase), or None when it does not exist."""
    client = factory.container_apps(config.SUBSCRIPTION_ID)
    try:
        app = client.container_apps.get(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME)
    except Exception as e:  # noqa: BLE001
        if is_not_found(e):
            return None
        raise
    return rest_json(app)


def rest_json(model: Any) -> dict[str, Any]:
    """An SDK model as ARM's REST JSON (camelCase keys), whichever generation of models it is."""
    if hasattr(model, "as_dict") and not hasattr(model, "serialize"):
        return model.as_dict()  # typespec models: mappings over the REST JSON
    if hasattr(model, "serialize"):
        return model.serialize(keep_readonly=True)  # msrest models
    return json.loads(json.dumps(model, default=dict))


def _http_concurrency(rule: dict[str, Any]) -> int | None:
    meta = ((rule.get("http") or {}).get("metadata") or {})
    try:
        value = int(str(meta.get("concurrentRequests")))
    except ValueError:
        return None
    return value if value >= 1 else None


def settings_of(app: dict[str, Any]) -> ScaleSettings:
    scale = ((app.get("properties") or {}).get("template") or {}).get("scale") or {}
    lo = scale.get("minReplicas")
    hi = scale.get("maxReplicas")
    lo = lo if isinstance(lo, int) and lo >= 0 else 0
    hi = hi if isinstance(hi, int) and hi >= 1 else 10  # ACA's default maximum
    conc = next((c for c in map(_http_concurrency, scale.get("rules") or []) if c is not None), None)
    return ScaleSettings(lo, max(lo, hi), conc or DEFAULT_CONCURRENCY, conc is None)


def _profile_type(factory: ClientFactory, config: InferenceConfig, app: dict[str, Any]) -> str | None:
    """The workload profile type (e.g. Consumption-GPU-NC24-A100) the app runs on."""
    props = app.get("properties") or {}
    name, env_id = props.get("workloadProfileName"), props.get("managedEnvironmentId") or props.get("environmentId")
    if not name or not env_id:
        return None
    client = factory.container_apps(config.SUBSCRIPTION_ID)
    env = client.managed_environments.get(env_id.split("/")[4], env_id.rstrip("/").split("/")[-1])
    for wp in rest_json(env).get("properties", {}).get("workloadProfiles") or []:
        if str(wp.get("name", "")).lower() == str(name).lower():
            return wp.get("workloadProfileType")
    return None


def profile_and_cost(factory: ClientFactory, config: InferenceConfig, app: dict[str, Any],
                     settings: ScaleSettings) -> tuple[str | None, CostEstimate | None]:
    try:
        profile = _profile_type(factory, config, app)
    except Exception:  # noqa: BLE001 - the estimate is a nicety; the settings still show
        return None, None
    if profile is None:
        return None, None
    containers = ((app.get("properties") or {}).get("template") or {}).get("containers") or [{}]
    res = containers[0].get("resources") or {}
    cpu = res.get("cpu")
    return profile, estimate(profile, settings.min_replicas, settings.max_replicas,
                             vcpus=float(cpu) if isinstance(cpu, (int, float)) else None,
                             memory=memory_gib(res.get("memory")))


def _read_scale_sync(factory: ClientFactory, config: InferenceConfig) -> AppScale | None:
    app = app_json(factory, config)
    if app is None:
        return None
    settings = settings_of(app)
    profile, cost = profile_and_cost(factory, config, app, settings)
    return AppScale(str(app.get("name") or config.ACA_APP_NAME), settings, profile, cost)


async def read_scale(factory: ClientFactory, config: InferenceConfig) -> AppScale | None:
    """The app's scale settings and cost estimate; None when the app does not exist (not
    provisioned, or taken down)."""
    config.require(*APP_KEYS)
    try:
        return await asyncio.to_thread(_read_scale_sync, factory, config)
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"read the scale settings of container app {config.ACA_APP_NAME}") from None


# -- changing --------------------------------------------------------------------------------------
def scale_patch(app: dict[str, Any], after: ScaleSettings) -> dict[str, Any]:
    """The merge-patch body: the whole ``scale`` object (arrays are replaced in a merge patch,
    so the rules the app has besides the HTTP one are sent back as they are)."""
    scale = ((app.get("properties") or {}).get("template") or {}).get("scale") or {}
    rules = [dict(r) for r in scale.get("rules") or []]
    http = [r for r in rules if r.get("http") is not None]
    if not after.concurrency_is_default or http:
        rule = http[0] if http else {"name": HTTP_RULE_NAME}
        rule["http"] = {**(rule.get("http") or {}),
                        "metadata": {**((rule.get("http") or {}).get("metadata") or {}),
                                     "concurrentRequests": str(after.concurrency)}}
        if not http:
            rules.append(rule)
    body_scale = {"minReplicas": after.min_replicas, "maxReplicas": after.max_replicas, "rules": rules}
    return {"properties": {"template": {"scale": body_scale}}}


def _patch_sync(factory: ClientFactory, config: InferenceConfig, body: dict[str, Any]) -> None:
    client = factory.container_apps(config.SUBSCRIPTION_ID)
    # Raw JSON: exactly the merge patch above, not a model that would add nulls or defaults.
    poller = client.container_apps.begin_update(config.RESOURCE_GROUP_NAME, config.ACA_APP_NAME,
                                                io.BytesIO(json.dumps(body).encode()),
                                                content_type="application/json")
    poller.result()


async def scale(factory: ClientFactory, config: InferenceConfig, request: ScaleRequest) -> AsyncIterator[Event]:
    """Apply ``request`` to the app: Info lines, then Done(result=Scaled); Failed when
    the app does not exist or Azure refuses."""
    doing = f"change the scale of container app {config.ACA_APP_NAME}"
    try:
        config.require(*APP_KEYS)
        app = await asyncio.to_thread(app_json, factory, config)
        if app is None:
            yield failed_event(InputError(f"Container app {config.ACA_APP_NAME} does not exist.",
                                          "provision it first (aitk provision)"))
            return
        before = settings_of(app)
        after = request.apply(before)
        if after == before:
            yield Info("The scale settings are already so; nothing was sent.")
        else:
            yield Info(f"Updating the scale of {config.ACA_APP_NAME}: {_words(before)} -> {_words(after)}")
            await asyncio.to_thread(_patch_sync, factory, config, scale_patch(app, after))
            app = await asyncio.to_thread(app_json, factory, config) or app
            after = settings_of(app)
        profile, cost = await asyncio.to_thread(profile_and_cost, factory, config, app, after)
    except Exception as e:  # noqa: BLE001
        yield failed(e, doing)
        return
    result = Scaled(config.ACA_APP_NAME, before, after, profile, cost)
    warm = ("a GPU replica stays on and bills while idle" if after.keeps_warm
            else "scales to zero when idle (the first request then waits for a cold start)")
    yield Done(f"{config.ACA_APP_NAME}: {_words(after)}; {warm}", result=result)


def _words(s: ScaleSettings) -> str:
    conc = f"{s.concurrency} concurrent requests per replica" + (" (ACA default)" if s.concurrency_is_default else "")
    return f"min {s.min_replicas}, max {s.max_replicas}, {conc}"
