"""What an operation may use of the session: the small context every ``cloud/`` operation takes.

Operations (provision, deploy, health, logs, status, model upload) get this, not the whole
:class:`~aitk_tui.cloud.session.CloudSession`: an SDK client factory for one cloud, the
project's files, the cloud's endpoints and timings, and the two per-session services they
share (the storage key cache and the remembered choices). ``tests/test_contract.py`` proves
that the operation modules touch nothing else of the session, and that the session provides
all of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config.state import ProjectState
    from ..endpoints import CloudEndpoints
    from ..project import Project
    from .clients import ClientFactory


class OperationContext(Protocol):
    factory: "ClientFactory"
    project: "Project"
    endpoints: "CloudEndpoints"
    health_timeout_s: float
    health_interval_s: float
    poll_interval_s: float
    served_model: str | None  # a local cloud started with --model serves it, whatever the share holds

    async def storage_key(self, subscription_id: str, resource_group: str, account: str) -> str: ...

    def remember(self, **values: Any) -> "ProjectState": ...


OPERATION_MODULES = ("provision", "preflight", "deploy", "health", "logs", "endpoint_status", "models_upload")
