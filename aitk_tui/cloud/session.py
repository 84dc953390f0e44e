"""``CloudSession``: the one object both front-ends use to talk to Azure (or the local cloud).

It owns the credential, the client factory and a few per-session caches (storage keys),
and exposes plain async methods plus async generators of :mod:`aitk_tui.events`.
Blocking SDK calls run in threads (``asyncio.to_thread``); failures inside generators are
yielded as :class:`~aitk_tui.events.Failed`, failures of plain methods raise
:class:`~aitk_tui.errors.AitkError` -- both already redacted. No Textual, and no SDK import
at module level (the CLI imports this lazily, the TUI on first use).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..config.inference_config import InferenceConfig
from ..config.state import ProjectState
from ..endpoints import CloudEndpoints
from ..errors import AitkError
from ..events import Done, Event, Info, LogLine
from ..project import Project
from .clients import ClientFactory
from .models import AppStatus, Identity, ResourceGroupInfo, SignedIn, Subscription

if TYPE_CHECKING:
    from ..config.parameters import ParametersDocument
    from .operate import AppScale, ScaleRequest
    from .endpoint_status import EndpointStatus
    from .models_upload import ShareModel, UploadRequest
    from .teardown import TeardownPlan

__all__ = ["CloudSession", "Identity", "Subscription", "ResourceGroupInfo", "AppStatus"]

# Real Azure: a GPU replica's cold start (image pull + pip install + model load from the
# share) can take most of the startup probe's budget, so wait up to 20 minutes.
AZURE_HEALTH_TIMEOUT_S = 20 * 60.0
LOCAL_HEALTH_TIMEOUT_S = 180.0


def tune_for_local(endpoints: CloudEndpoints) -> CloudEndpoints:
    """Fast polling and retries against the local cloud (real Azure keeps SDK defaults)."""
    changes: dict[str, Any] = {}
    if endpoints.polling_interval is None:
        changes["polling_interval"] = 0.2
    if endpoints.retry_backoff_factor is None:
        changes["retry_backoff_factor"] = 0.05
    return dataclasses.replace(endpoints, **changes) if changes else endpoints


class CloudSession:
    """A signed-in (or about to be) connection to one cloud for one project."""

    def __init__(self, project: Project, endpoints: CloudEndpoints, credential: Any, *,
                 method: str = "auto", prompt_sink: Callable[[str], None] | None = None) -> None:
        self.project = project
        self.endpoints = endpoints
        self.credential = credential
        self.method = method
        self.factory = ClientFactory(endpoints, credential)
        # Where a device-code prompt goes when no sign_in() generator is listening.
        self.prompt_sink = prompt_sink
        self.health_timeout_s = LOCAL_HEALTH_TIMEOUT_S if endpoints.is_local else AZURE_HEALTH_TIMEOUT_S
        self.health_interval_s = 0.5 if endpoints.is_local else 5.0
        self.poll_interval_s = 0.2 if endpoints.is_local else 3.0
        # The base model a local cloud started with --model serves in every replica, whatever
        # the share holds (set by aitk_tui.backend.open_session); None on Azure.
        self.served_model: str | None = None
        self._identity: Identity | None = None
        self._storage_keys: dict[tuple[str, str, str], str] = {}
        self._prompt_queue: asyncio.Queue[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- opening -----------------------------------------------------------------------
    # Real Azure or the local cloud is picked in :func:`aitk_tui.backend.open_session` (this
    # package never imports the local cloud); here only a session on known endpoints.
    @classmethod
    def for_cloud(cls, project: Project, endpoints: CloudEndpoints, credential: Any, *,
                  method: str = "local") -> "CloudSession":
        """A session on an already running cloud (the in-process local cloud of the tests)."""
        if endpoints.is_local:
            endpoints = tune_for_local(endpoints)
        return cls(project, endpoints, credential, method=method)

    # -- device code plumbing -------------------------------------------------------------
    def on_device_code(self, message: str) -> None:
        """Called from the SDK thread that is waiting for the user to enter the code."""
        queue, loop = self._prompt_queue, self._loop
        if queue is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(queue.put_nowait, message)
        elif self.prompt_sink is not None:
            self.prompt_sink(message)
        else:
            import sys

            print(message, file=sys.stderr, flush=True)

    # -- identity ------------------------------------------------------------------------
    async def sign_in(self) -> AsyncIterator[Event]:
        """Acquire a token: Info events (device-code instructions), then Done(result=SignedIn)."""
        from . import auth as _auth

        self._loop = asyncio.get_running_loop()
        self._prompt_queue = asyncio.Queue()
        task = asyncio.ensure_future(_auth.identify(self.credential, self.method))
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self._prompt_queue.get())
                done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield Info(getter.result())
                    continue
                getter.cancel()
                while not self._prompt_queue.empty():
                    yield Info(self._prompt_queue.get_nowait())
                break
            try:
                identity = task.result()
            except AitkError as e:
                from .sdkerrors import failed_event

                yield failed_event(e)
                return
            self._identity = identity
            yield Done(f"Signed in as {identity.display_name}", result=SignedIn(identity))
        finally:
            for fut in (task, getter):
                if fut is not None and not fut.done():
                    fut.cancel()
            self._prompt_queue = None

    async def whoami(self) -> Identity:
        if self._identity is None:
            from . import auth as _auth

            self._identity = await _auth.identify(self.credential, self.method)
        return self._identity

    # -- accounts ------------------------------------------------------------------------
    async def list_subscriptions(self) -> list[Subscription]:
        from . import accounts

        return await asyncio.to_thread(accounts.list_subscriptions, self.factory)

    async def list_resource_groups(self, subscription_id: str) -> list[ResourceGroupInfo]:
        from . import accounts

        return await asyncio.to_thread(accounts.list_resource_groups, self.factory, subscription_id)

    async def create_resource_group(self, subscription_id: str, name: str, location: str) -> ResourceGroupInfo:
        from . import accounts

        return await asyncio.to_thread(accounts.create_resource_group, self.factory, subscription_id, name, location)

    # -- provisioning --------------------------------------------------------------------
    async def what_if(self, subscription_id: str, resource_group: str,
                      params: "ParametersDocument") -> AsyncIterator[Event]:
        """Pre-flight + preview: Info lines, then Done(result=WhatIf)."""
        from . import provision

        async for event in provision.what_if(self, subscription_id, resource_group, params):
            yield event

    async def provision(self, subscription_id: str, resource_group: str,
                        params: "ParametersDocument") -> AsyncIterator[Event]:
        """ARM deployment: ResourceProgress..., then Done(result=Provisioned) after
        ``infra/inference.config.json`` was written (never on failure or cancellation)."""
        from . import provision

        self._forget_keys(subscription_id, resource_group)  # a storage account may be made anew
        async for event in provision.provision(self, subscription_id, resource_group, params):
            yield event

    # -- deploying -----------------------------------------------------------------------
    async def deploy(self, config: InferenceConfig, *, restart: bool = True, wait: bool = True,
                     health_timeout_s: float | None = None, **options: Any) -> AsyncIterator[Event]:
        """Sync ``inference_server/`` to the share, restart the revision, wait for /health.

        ``options``: ``force_restart`` (restart even when nothing changed), ``warn_bytes``."""
        from . import deploy as _deploy

        async for event in _deploy.deploy(self, config, restart=restart, wait=wait,
                                          health_timeout_s=health_timeout_s, **options):
            yield event

    async def status(self, config: InferenceConfig) -> AppStatus:
        from . import health

        return await health.app_status(self, config)

    async def replica_logs(self, config: InferenceConfig, *, follow: bool = True,
                           tail_lines: int = 100, kind: str = "console") -> AsyncIterator[LogLine]:
        """The replicas' console output, or (``kind="system"``) the app's system log."""
        from . import logs

        async for line in logs.replica_logs(self, config, follow=follow, tail_lines=tail_lines,
                                            kind=kind):  # type: ignore[arg-type]
            yield line

    async def endpoint_status(self, config: InferenceConfig) -> "EndpointStatus":
        """The Endpoint view: app, revisions, replicas, scale, health, cost, failure reason."""
        from .endpoint_status import read_endpoint_status

        return await read_endpoint_status(self, config)

    async def revision_failure(self, config: InferenceConfig) -> str | None:
        """One sentence when every revision that takes requests failed (ActivationFailed...),
        so no replica will come however long one waits; None otherwise. The chat's wake path asks."""
        from .endpoint_status import revision_failure

        return await revision_failure(self, config)

    # -- models on the share ---------------------------------------------------------------
    async def upload_models(self, config: InferenceConfig, request: "UploadRequest",
                            **options: Any) -> AsyncIterator[Event]:
        """Copy a LoRA adapter (and base model) to the share, then point the parameters at them:
        UploadProgress..., then Done(result=ModelsUploaded). See :mod:`.models_upload`."""
        import contextlib

        from . import models_upload

        # aclosing: closing this generator stops the upload now (it records what finished).
        async with contextlib.aclosing(models_upload.upload(self, config, request, **options)) as events:
            async for event in events:
                yield event

    async def list_models(self, config: InferenceConfig) -> "list[ShareModel]":
        """The adapters (``models/``) and base models (``model-cache/``) on the share."""
        from . import models_upload

        return await models_upload.list_models(self, config)

    # -- scale ------------------------------------------------------------------------------
    async def read_scale(self, config: InferenceConfig) -> "AppScale | None":
        """The app's replicas, scale rule and cost estimate; None when the app does not exist."""
        from . import operate

        return await operate.read_scale(self.factory, config)

    async def scale(self, config: InferenceConfig, request: "ScaleRequest") -> AsyncIterator[Event]:
        """Update the app's scale (no re-provision): Info..., then Done(result=Scaled)."""
        import contextlib

        from . import operate

        async with contextlib.aclosing(operate.scale(self.factory, config, request)) as events:
            async for event in events:
                yield event

    # -- teardown ---------------------------------------------------------------------------
    async def teardown_plan(self, config: InferenceConfig, *, everything: bool = False) -> "TeardownPlan":
        """What ``tear_down`` would delete: the app, or (``everything``) what provisioning created."""
        from . import teardown
        from .sdkerrors import describe

        try:
            return await teardown.plan(self.factory, config, everything=everything, project=self.project)
        except Exception as e:  # noqa: BLE001 - a plain method raises AitkError (Backend's contract)
            raise describe(e, "list the provisioned resources") from None

    async def tear_down(self, config: InferenceConfig, plan: "TeardownPlan") -> AsyncIterator[Event]:
        """Delete what ``plan`` lists: ResourceProgress..., then Done(result=TornDown)."""
        import json

        from . import teardown

        try:  # the template's api-versions, when it can be read (else the built-in ones)
            template = json.loads(self.project.template_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            template = None
        try:
            async for event in teardown.down(self.factory, config, plan, template):
                yield event
        finally:  # even a teardown stopped halfway may have deleted the account
            self._forget_keys(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME)

    async def api_key(self, config: InferenceConfig, endpoint: str | None = None, *,
                      allow_insecure_http: bool = False) -> str:
        """The app's API key, refused unless ``endpoint`` (default ACA_APP_ENDPOINT) is the app's own."""
        from . import health

        return await health.api_key(self, config, endpoint, allow_insecure_http=allow_insecure_http)

    # -- per-session caches ---------------------------------------------------------------
    def _forget_keys(self, subscription_id: str | None, resource_group: str | None) -> None:
        """Drop the cached storage keys of a resource group whose accounts are deleted or re-made
        (a kept key signed the next deploy's requests for the new account: 403)."""
        for cache_key in [k for k in self._storage_keys
                          if (k[0], k[1].lower()) == (subscription_id, (resource_group or "").lower())]:
            del self._storage_keys[cache_key]

    async def storage_key(self, subscription_id: str, resource_group: str, account: str) -> str:
        """The storage account's key 1 (listKeys), cached for the session, registered as secret."""
        cache_key = (subscription_id, resource_group, account)
        if cache_key not in self._storage_keys:
            from . import deploy as _deploy

            self._storage_keys[cache_key] = await asyncio.to_thread(
                _deploy.fetch_storage_key, self.factory, subscription_id, resource_group, account)
        return self._storage_keys[cache_key]

    # -- remembered choices ---------------------------------------------------------------
    def load_state(self) -> ProjectState:
        return ProjectState.load(self.project.state_path)

    def remember(self, **values: Any) -> ProjectState:
        """Record the choices given (None: keep what is remembered) in ``.aitk/state.json``."""
        given = {k: v for k, v in values.items() if v is not None}
        try:
            return ProjectState.update(self.project.state_path, **given)
        except OSError:
            return self.load_state()  # preferences only; never fail an operation over them

    async def close(self) -> None:
        close = getattr(self.credential, "close", None)
        if callable(close):
            try:
                await asyncio.to_thread(close)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

