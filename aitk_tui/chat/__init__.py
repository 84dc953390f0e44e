"""Chat with an OpenAI-compatible endpoint (no UI code here; see ``client``)."""

from .client import (
    ASLEEP,
    ChatClient,
    ChatError,
    ChatEvent,
    Delta,
    Finished,
    HealthStatus,
    ModelInfo,
    Transcript,
    Usage,
    normalize_base_url,
    sanitize,
)

__all__ = [
    "ASLEEP",
    "ChatClient",
    "ChatError",
    "ChatEvent",
    "Delta",
    "Finished",
    "HealthStatus",
    "ModelInfo",
    "Transcript",
    "Usage",
    "normalize_base_url",
    "sanitize",
]
