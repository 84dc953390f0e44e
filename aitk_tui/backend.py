"""The back-end contract: the one place that picks Azure or the local cloud, and what the faces may call.

- :func:`open_session` builds the session for real Azure (credential chosen by ``auth``)
  or for the project's local cloud: it starts the emulator (:mod:`aitk_tui.local.daemon`)
  and then reaches it by its endpoints and credential alone, exactly as Azure is reached.
  ``aitk_tui.cloud`` never imports ``aitk_tui.local`` and the other way round
  (``tests/test_boundaries.py``); this module is the only bridge.
- :class:`Backend` names what the TUI and the CLI may call on a session. ``CloudSession``
  and the TUI's test fake (``tests/ui/fakes.py``) are both checked against it
  (``tests/test_contract.py``), so neither can drift.

Only the standard library at module level: the CLI and the TUI import this on their way
to the back-end, which is loaded on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .cloud.endpoint_status import EndpointStatus
    from .cloud.models import AppStatus, Identity, ResourceGroupInfo, Subscription
    from .cloud.models_upload import ShareModel, UploadRequest
    from .cloud.teardown import TeardownPlan
    from .cloud.operate import AppScale, ScaleRequest
    from .cloud.session import CloudSession
    from .config.inference_config import InferenceConfig
    from .config.parameters import ParametersDocument
    from .config.state import ProjectState
    from .endpoints import CloudEndpoints
    from .events import Event, LogLine
    from .project import Project

__all__ = ["Backend", "open_session", "subscription_fits"]


@runtime_checkable
class Backend(Protocol):
    """What the faces call on a session. Long operations are async generators of
    :mod:`aitk_tui.events` ending in ``Done(result=...)`` (a typed result) or ``Failed``;
    plain methods raise :class:`~aitk_tui.errors.AitkError`."""

    project: Project
    endpoints: CloudEndpoints

    def sign_in(self) -> AsyncIterator[Event]:
        """Info (device-code instructions)..., then Done(result=SignedIn)."""
        ...

    async def whoami(self) -> Identity: ...

    async def list_subscriptions(self) -> list[Subscription]: ...

    async def list_resource_groups(self, subscription_id: str) -> list[ResourceGroupInfo]: ...

    async def create_resource_group(self, subscription_id: str, name: str, location: str) -> ResourceGroupInfo: ...

    def what_if(self, subscription_id: str, resource_group: str, params: ParametersDocument) -> AsyncIterator[Event]:
        """Info..., then Done(result=WhatIf)."""
        ...

    def provision(self, subscription_id: str, resource_group: str,
                  params: ParametersDocument) -> AsyncIterator[Event]:
        """ResourceProgress..., then Done(result=Provisioned) once inference.config.json is written."""
        ...

    def deploy(self, config: InferenceConfig, *, restart: bool = True, wait: bool = True,
               health_timeout_s: float | None = None, **options: Any) -> AsyncIterator[Event]:
        """UploadProgress / Info / HealthWait..., then Done(result=Deployed)."""
        ...

    async def status(self, config: InferenceConfig) -> AppStatus: ...

    def replica_logs(self, config: InferenceConfig, *, follow: bool = True,
                     tail_lines: int = 100, kind: str = "console") -> AsyncIterator[LogLine]:
        """The replicas' console output, or (``kind="system"``) the app's system log."""
        ...

    async def endpoint_status(self, config: InferenceConfig) -> EndpointStatus:
        """The Endpoint view: app, revisions, replicas, scale, health, cost, failure reason."""
        ...

    async def revision_failure(self, config: InferenceConfig) -> str | None:
        """One sentence when every revision that takes requests failed (ActivationFailed...),
        so no replica will come however long one waits; None otherwise. The chat's wake path asks."""
        ...

    async def read_scale(self, config: InferenceConfig) -> AppScale | None:
        """Replicas, scale rule and cost estimate; None when the app does not exist."""
        ...

    def scale(self, config: InferenceConfig, request: ScaleRequest) -> AsyncIterator[Event]:
        """Info..., then Done(result=Scaled)."""
        ...

    def upload_models(self, config: InferenceConfig, request: UploadRequest, **options: Any) -> AsyncIterator[Event]:
        """An adapter (and base model) to the share, then the parameters: UploadProgress / Info...,
        then Done(result=ModelsUploaded)."""
        ...

    async def list_models(self, config: InferenceConfig) -> list[ShareModel]:
        """The adapters (``models/``) and base models (``model-cache/``) on the share."""
        ...

    async def teardown_plan(self, config: InferenceConfig, *, everything: bool = False) -> TeardownPlan:
        """What ``tear_down`` would delete (nothing is changed)."""
        ...

    def tear_down(self, config: InferenceConfig, plan: TeardownPlan) -> AsyncIterator[Event]:
        """ResourceProgress (Deleting, Deleted / AlreadyGone)..., then Done(result=TornDown)."""
        ...

    async def api_key(self, config: InferenceConfig, endpoint: str | None = None, *,
                      allow_insecure_http: bool = False) -> str: ...

    def load_state(self) -> ProjectState: ...

    def remember(self, **values: Any) -> ProjectState: ...

    async def close(self) -> None: ...


async def open_session(project: Project, *, local: bool = False, auth: str = "auto",
                       model_path: Path | None = None, adapter_path: Path | None = None,
                       prompt_sink: Callable[[str], None] | None = None) -> CloudSession:
    """A session on real Azure (credential chosen by ``auth``) or on the local cloud.

    ``local=True`` starts the project's local cloud (``.aitk/local``) if it is not running,
    serving ``model_path``/``adapter_path`` when given; ``auth`` is then ignored.
    ``prompt_sink``: where a device-code prompt goes when no ``sign_in()`` is listening.
    """
    from .cloud.session import CloudSession, tune_for_local
    from .errors import AitkError

    if local:
        from .local import daemon
        from .local.credential import LocalCredential

        def start() -> Any:
            running = daemon.ensure_running(project.local_cloud_dir, model_path=model_path,
                                            adapter_path=adapter_path)
            # The credential imports azure.core on its first token, in whichever thread asks.
            # The faces ask for one (whoami) while another thread imports the SDK's clients
            # (the first status read), and two threads importing the same package can meet a
            # partly initialised module. Import it here, before any of that starts.
            import azure.core.credentials  # noqa: F401

            return running

        try:
            info = await asyncio.to_thread(start)
        except AitkError:
            raise
        except Exception as e:  # noqa: BLE001 - one sentence for the user
            raise AitkError("The local cloud could not be started.", f"{type(e).__name__}: {e}") from None
        state_dir = getattr(info, "state_dir", None) or project.local_cloud_dir
        session = CloudSession(project, tune_for_local(info.endpoints), LocalCredential(state_dir), method="local",
                               prompt_sink=prompt_sink)
        session.served_model = getattr(info, "model_path", None)
        return session
    from .cloud import auth as _auth
    from .cloud.clients import ClientFactory
    from .endpoints import AZURE

    session = CloudSession(project, AZURE, None, method=auth, prompt_sink=prompt_sink)
    # The device-code prompt goes to the session, which hands it to whoever listens.
    session.credential = _auth.CachedCredential(_auth.make_credential(auth, prompt=session.on_device_code))
    session.factory = ClientFactory(session.endpoints, session.credential)
    return session


def subscription_fits(endpoints: CloudEndpoints, subscription_id: str | None) -> bool:
    """Whether a remembered subscription belongs to this cloud: the local cloud's one
    subscription on the local cloud only, any other on Azure only."""
    if subscription_id is None:
        return False
    try:
        from .local.credential import LOCAL_SUBSCRIPTION_ID
    except ImportError:  # the local cloud is optional at run time
        return True

    return (subscription_id == LOCAL_SUBSCRIPTION_ID) == endpoints.is_local
