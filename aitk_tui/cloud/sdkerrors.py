"""Turns SDK and network exceptions into one clear (redacted) sentence plus detail.

Every back-end module funnels unexpected exceptions through :func:`describe`, so the
user never sees a raw SDK message (which may quote request headers) or a traceback.
"""

from __future__ import annotations

import json

from ..errors import AitkError
from . import armerrors
from ..events import Failed

class InputError(AitkError):
    """A value the user gave broke a rule; nothing was sent (the CLI exits 2)."""

    config_error = True


class NotSignedInError(AitkError):
    """No usable sign-in: configuration, not a failed operation (the CLI exits 2)."""

    config_error = True


NOT_SIGNED_IN = ("Not signed in to Azure: run `az login`, or use `--device-code` "
                 "on a machine without a browser.")


def _first_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines[:n])


def _code_and_message(exc: BaseException) -> tuple[str | None, str]:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) if err is not None else None
    message = getattr(err, "message", None) if err is not None else None
    if not message:
        message = getattr(exc, "message", None) or str(exc)
    return code, _first_lines(message)


def _error_body(exc: BaseException) -> object:
    """The response's ``error`` as sent (every level of ``details``), else azure-core's parse of it."""
    response = getattr(exc, "response", None)
    try:
        text = response.text() if response is not None else None
    except Exception:  # noqa: BLE001 - a body that cannot be read: use what the SDK parsed
        text = None
    if text:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"]
    return getattr(exc, "error", None)


def _arm_error(exc: BaseException, doing: str, names: dict[str, str] | None = None) -> AitkError | None:
    """The deepest causes of a nested ARM error (or one with a known remedy), in a sentence or
    two plus what to do; None for a plain one-level error."""
    body = _error_body(exc)
    if body is None:
        return None
    text, hint, found = armerrors.explain(body, names=names)
    if not found or not (armerrors.is_wrapped(body) or hint):
        return None
    status = getattr(exc, "status_code", None)
    top = armerrors.error_of(body)
    detail = f"Azure answered {status or 'an error'}: {armerrors.chain(body)}"
    top_message = _first_lines(str(armerrors.field_of(top, "message") or ""), 2)
    if top_message:
        detail += f"; {top_message}"
    return AitkError(f"Could not {doing}: {text}" + (f" {hint}" if hint else ""), detail)


def describe(exc: BaseException, doing: str, names: dict[str, str] | None = None) -> AitkError:
    """``doing`` completes "Could not ..." e.g. "list subscriptions". ``names`` (resource type ->
    name) lets a nested ARM error name the resource its cause concerns."""
    if isinstance(exc, AitkError):
        return exc
    try:
        from azure.core import exceptions as az
    except ImportError:  # pragma: no cover - the SDK is a dependency
        az = None
    if az is not None:
        if isinstance(exc, az.ClientAuthenticationError):
            status = getattr(exc, "status_code", None)
            if status == 403:
                code, msg = _code_and_message(exc)
                return AitkError(f"Could not {doing}: you do not have permission.", f"{code or 'Forbidden'}: {msg}")
            return NotSignedInError(NOT_SIGNED_IN, _first_lines(str(exc)))
        if isinstance(exc, az.ResourceNotFoundError):
            code, msg = _code_and_message(exc)
            return AitkError(f"Could not {doing}: it was not found.", f"{code or 'NotFound'}: {msg}")
        if isinstance(exc, az.HttpResponseError):
            nested = _arm_error(exc, doing, names)
            if nested is not None:
                return nested
            code, msg = _code_and_message(exc)
            status = getattr(exc, "status_code", None)
            return AitkError(f"Could not {doing}: Azure answered {status or 'an error'}.",
                             f"{code + ': ' if code else ''}{msg}")
        if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError)):
            return AitkError(f"Could not {doing}: the connection to Azure failed (after retries).",
                             _first_lines(str(exc)))
        if isinstance(exc, az.AzureError):
            return AitkError(f"Could not {doing}.", _first_lines(str(exc)))
    try:
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover
        CredentialUnavailableError = ()  # type: ignore[assignment]
    if CredentialUnavailableError and isinstance(exc, CredentialUnavailableError):
        return NotSignedInError(NOT_SIGNED_IN, _first_lines(str(exc)))
    if isinstance(exc, OSError):
        return AitkError(f"Could not {doing}: {exc.strerror or 'an operating-system error'}.",
                         f"{type(exc).__name__}: {exc}")
    return AitkError(f"Could not {doing}.", f"{type(exc).__name__}: {_first_lines(str(exc))}")


def failed(exc: BaseException, doing: str, names: dict[str, str] | None = None) -> Failed:
    err = describe(exc, doing, names)
    return failed_event(err)


def failed_event(err: AitkError) -> Failed:
    """The Failed event for ``err``, marked as a configuration problem where it is one."""
    return Failed(err.message, err.detail, config_error=err.config_error)


def is_not_found(exc: BaseException) -> bool:
    try:
        from azure.core.exceptions import ResourceNotFoundError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) == 404


def app_not_found(exc: BaseException, config: Any) -> BaseException | None:
    """AppGone when ``exc`` is ARM's 404 for the config's container app, else None."""
    from ..errors import AppGone

    return AppGone.named(config.ACA_APP_NAME) if is_not_found(exc) else None


def is_unsupported(exc: BaseException) -> bool:
    """An API the (local) cloud does not implement: 404/405/501 without a resource error."""
    return getattr(exc, "status_code", None) in (404, 405, 501)
