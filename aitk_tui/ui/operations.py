"""What the TUI makes of the session's answers, with no widget: opening the session, a failure
as one sentence and its detail, an endpoint's status as the header's health word.

The operations themselves (workers and the handlers of their messages) are the main screen's:
:mod:`aitk_tui.ui.screens.main`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config.inference_config import InferenceConfig
from ..errors import AitkError, redact

if TYPE_CHECKING:
    from ..backend import Backend

OPERATION_GROUP = "operation"


async def default_session_factory(project, **kwargs) -> Backend:
    """:func:`aitk_tui.backend.open_session` (the SDK behind it is imported on first use)."""
    from ..backend import open_session

    return await open_session(project, **kwargs)


def describe_failure(error: BaseException) -> tuple[str, str | None]:
    if isinstance(error, AitkError):
        return error.message, error.detail
    return f"Something unexpected went wrong ({type(error).__name__}).", redact(str(error)[:500]) or None


async def keeps_warm(session: Backend, config: InferenceConfig) -> bool | None:
    """Whether the app keeps a GPU replica on (min >= 1); None when it cannot be told."""
    try:
        info = await session.read_scale(config)
    except AitkError:
        return None
    return False if info is None else info.settings.keeps_warm


def health_from_status(status: Any) -> str:
    healthy = getattr(status, "healthy", None)
    replicas = getattr(status, "replicas", None)
    running = (getattr(status, "running_state", None) or "").lower()
    if getattr(status, "revision_failed", False):
        return "failed"  # ActivationFailed: no replica comes, so it is not asleep (and not "waking")
    if healthy:
        return "healthy"
    if (getattr(status, "revision_state", None) or "").lower() == "activating":
        return "waking"
    if replicas == 0 or running in ("stopped", "scaledtozero"):
        return "asleep"
    if healthy is False:
        return "unhealthy"
    if isinstance(replicas, int) and replicas > 0:
        return "waking"  # a replica runs but the platform has not judged it yet: it is starting
    return "unknown"
