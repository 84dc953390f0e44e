"""Credential selection, device-code sign-in and who-am-I.

``--auth`` picks the credential:

* ``auto``: ``DefaultAzureCredential`` without managed identity (it probes the instance
  metadata endpoint, slow and pointless on a laptop) and without the interactive browser;
* ``cli``: ``AzureCliCredential`` (``az login``);
* ``env``: ``EnvironmentCredential`` (AZURE_CLIENT_ID / AZURE_TENANT_ID / secret or cert);
* ``managed-identity``: ``ManagedIdentityCredential`` (on an Azure VM or container);
* ``device-code``: ``DeviceCodeCredential``; its instructions ("open URL, enter CODE")
  reach the user as an ``Info`` event, which works over ssh with no browser.

Who-am-I decodes the access token's payload *without verifying it* (we are its audience's
client, not its validator) and keeps only name/upn/oid/tid. The token is registered as a
secret so that it is redacted from anything we print, and is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

from ..endpoints import ARM_SCOPE
from ..errors import AitkError, register_secret
from .models import Identity
from .sdkerrors import NOT_SIGNED_IN, NotSignedInError

AUTH_METHODS: tuple[str, ...] = ("auto", "cli", "env", "managed-identity", "device-code")


def make_credential(method: str, *, prompt: Callable[[str], None] | None = None,
                    tenant_id: str | None = None) -> Any:
    """The azure-identity credential for ``method`` (see the module docstring)."""
    if method not in AUTH_METHODS:
        raise AitkError(f"Unknown sign-in method '{method}'.", f"choose one of: {', '.join(AUTH_METHODS)}")
    import azure.identity as ai

    kw: dict[str, Any] = {}
    if tenant_id:
        kw["tenant_id"] = tenant_id
    if method == "cli":
        return ai.AzureCliCredential(**kw)
    if method == "env":
        return ai.EnvironmentCredential()
    if method == "managed-identity":
        return ai.ManagedIdentityCredential()
    if method == "device-code":
        def on_prompt(verification_uri: str, user_code: str, expires_on: Any) -> None:
            when = ""
            try:
                when = f" (the code expires at {expires_on:%H:%M} UTC)"
            except (TypeError, ValueError):
                pass
            message = f"To sign in, open {verification_uri} and enter the code {user_code}{when}."
            if prompt is not None:
                prompt(message)

        return ai.DeviceCodeCredential(prompt_callback=on_prompt, **kw)
    return ai.DefaultAzureCredential(
        exclude_managed_identity_credential=True,
        exclude_interactive_browser_credential=True,
        **({"interactive_browser_tenant_id": tenant_id} if tenant_id else {}),
    )


def decode_claims(token: str) -> dict[str, Any]:
    """The JWT payload as a dict ({} when the token is not a JWT). Not verified."""
    parts = token.split(".")
    if len(parts) < 2:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def identity_from_token(token: str, method: str) -> Identity:
    claims = decode_claims(token)
    name = (claims.get("name") or claims.get("upn") or claims.get("unique_name")
            or claims.get("preferred_username") or claims.get("appid") or claims.get("oid"))
    upn = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username")
    if name and upn and upn != name:
        name = f"{name} ({upn})"
    if not name:
        name = "local user" if method == "local" else "signed-in principal"
    return Identity(display_name=str(name), tenant_id=claims.get("tid"), method=method)


def get_arm_token(credential: Any, method: str = "auto") -> str:
    """Blocking: one ARM access token (registered as a secret), or AitkError."""
    if credential is None:
        raise NotSignedInError(NOT_SIGNED_IN, "no credential")
    try:
        token = credential.get_token(ARM_SCOPE).token
    except AitkError:
        raise
    except Exception as e:  # noqa: BLE001 - every sign-in failure is one sentence
        raise sign_in_error(e, method) from None
    register_secret(token)
    return token


def _first_sentence(text: str) -> str:
    text = text.strip()
    m = re.search(r"(?<=[a-z0-9)\]])\.(\s|$)", text)
    return text[: m.start()] if m else text


# What to do next depends on how the user chose to sign in: advising `--device-code` to
# someone whose device-code sign-in just failed helps nobody.
_ADVICE = {
    "cli": "Not signed in to the Azure CLI: run `az login`, or use `--device-code` on a machine without a browser.",
    "env": "No service principal in the environment: set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
           "AZURE_CLIENT_SECRET, or choose another `--auth`.",
    "managed-identity": "No managed identity answers here: use it on an Azure VM or container that has one, "
                        "or choose another `--auth`.",
    "device-code": "The device-code sign-in did not finish: run the command again and enter the code it prints "
                   "before it expires.",
}
_NETWORK = re.compile(r"(?i)failed to resolve|name or service not known|temporary failure in name resolution|"
                      r"nodename nor servname|getaddrinfo failed|connection refused|network is unreachable|"
                      r"no route to host|timed out|max retries exceeded|connection (?:reset|aborted)")


def _unreachable(exc: BaseException) -> bool:
    """The sign-in service could not be reached (no network, DNS, proxy), as opposed to a
    sign-in that was refused or never set up."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (ConnectionError, TimeoutError)) or type(e).__name__ in (
                "ServiceRequestError", "ServiceRequestTimeoutError", "NewConnectionError", "NameResolutionError"):
            return True
        e = e.__cause__ or e.__context__ or getattr(e, "inner_exception", None)
    return bool(_NETWORK.search(str(exc)))


def sign_in_error(exc: BaseException, method: str = "auto") -> AitkError:
    detail = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    # DefaultAzureCredential lists every credential it tried with a paragraph each: keep
    # one short reason per credential.
    head, sep, tried = detail.partition("Attempted credentials:")
    if sep:
        parts = re.split(r"\s*\b(\w+Credential): ", " " + tried)
        reasons = [f"{name}: {_first_sentence(msg)}" for name, msg in zip(parts[1::2], parts[2::2])]
        detail = "tried " + "; ".join(reasons) if reasons else head
    if len(detail) > 700:
        detail = detail[:700] + "..."
    detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if _unreachable(exc) and not sep:  # DefaultAzureCredential: some failed offline, some were never set up
        return AitkError("Cannot reach Azure's sign-in service: check the network connection (or proxy settings) "
                         "and try again.", detail)
    return NotSignedInError(_ADVICE.get(method, NOT_SIGNED_IN), detail)


async def identify(credential: Any, method: str) -> Identity:
    token = await asyncio.to_thread(get_arm_token, credential, method)
    return identity_from_token(token, method)


class CachedCredential:
    """Shares tokens between the many SDK clients of a session.

    Each SDK client's auth policy caches its own token, so without this every new client
    asks the credential again -- with ``AzureCliCredential`` that is an ``az`` process
    (about a second) per client. A claims challenge (CAE, token revoked or expired) always
    goes to the real credential and replaces the cached token.
    """

    REFRESH_MARGIN_S = 300

    def __init__(self, inner: Any) -> None:
        import threading

        self.inner = inner
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], Any] = {}

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  **kwargs: Any) -> Any:
        import time

        key = (scopes, tenant_id, bool(kwargs.get("enable_cae")))
        if not claims:
            with self._lock:
                token = self._cache.get(key)
            if token is not None and token.expires_on - self.REFRESH_MARGIN_S > time.time():
                return token
        call_kw = dict(kwargs)
        if claims:
            call_kw["claims"] = claims
        if tenant_id:
            call_kw["tenant_id"] = tenant_id
        token = self.inner.get_token(*scopes, **call_kw)
        register_secret(token.token)
        with self._lock:
            self._cache[key] = token
        return token

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
