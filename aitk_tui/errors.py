"""The one error type users see, and secret redaction for every text we show or log.

An :class:`AitkError` carries one clear sentence (``message``) and the technical
``detail``. ``redact`` removes secrets: values registered with :func:`register_secret`
(API keys, storage keys, tokens we handled) and well-known secret shapes.
"""

from __future__ import annotations

import re
import threading

_secrets: set[str] = set()
_lock = threading.Lock()

_PATTERNS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1***"),
    (re.compile(r"(?i)(SharedKey\s+[^:\s]+:)[A-Za-z0-9+/=]+"), r"\1***"),
    (re.compile(r"(?i)(AccountKey=)[^;\s\"']+"), r"\1***"),
    (re.compile(r"(?i)([?&]sig=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(?i)(\"?(?:access_?token|api_?key|accountKey|primarySharedKey|value)\"?\s*[:=]\s*\")[A-Za-z0-9+/=._\-]{24,}(\")"), r"\1***\2"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it from any text."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str | None) -> str:
    if not text:
        return text or ""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    for pat, rep in _PATTERNS:
        text = pat.sub(rep, text)
    return text


class AitkError(Exception):
    """A failure explained in one sentence, with the detail kept apart (both redacted).

    ``config_error``: the user's to fix (a file, a value, a sign-in), not a failed operation.
    Subclasses say so once; the CLI exits 2 for them, 1 otherwise, and a ``Failed`` event
    made from one carries it (:func:`aitk_tui.cloud.sdkerrors.failed_event`)."""

    config_error: bool = False

    def __init__(self, message: str, detail: str | None = None) -> None:
        self.message = redact(message)
        self.detail = redact(detail) if detail else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message if not self.detail else f"{self.message} ({self.detail})"


class AppGone(AitkError):
    """The container app the config names does not exist (torn down, or never provisioned there):
    waiting or retrying cannot help, provisioning can."""

    config_error = True

    @classmethod
    def named(cls, app: str | None) -> "AppGone":
        return cls(f"Container app {app} does not exist (torn down?), so there is nothing to send to.",
                   "provision it again: F5, or `aitk provision`")
