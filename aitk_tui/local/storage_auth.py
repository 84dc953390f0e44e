"""Shared Key authorisation for the Files data plane, checked the way Azure Storage does.

The string to sign mirrors azure-storage's ``SharedKeyCredentialPolicy``: verb, eleven
standard headers, the ``x-ms-*`` headers sorted, ``/<account><path>`` and the sorted query.
A request signed with a wrong key (or not signed at all) gets 403 AuthenticationFailed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cmp_to_key
from urllib.parse import unquote

from .httpd import HttpError, Request

_STANDARD = ["content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
             "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "byte_range"]


def _storage_sort(keys: list[str]) -> list[str]:
    try:  # the SDK sorts x-ms-* headers with this collation; use the very same one
        from azure.storage.fileshare._shared.authentication import compare
        return sorted(keys, key=cmp_to_key(compare))
    except (ImportError, ValueError):
        return sorted(keys)


def string_to_sign(req: Request, account: str, with_length: bool = True) -> str:
    headers = {k.lower(): v for k, v in req.headers.items() if v}
    if headers.get("content-length") == "0" or not with_length:
        headers.pop("content-length", None)
    out = req.method + "\n" + "\n".join(headers.get(h, "") for h in _STANDARD) + "\n"
    xms = {k.lower(): v for k, v in req.headers.items() if k.lower().startswith("x-ms-")}
    for k in _storage_sort(list(xms)):
        out += f"{k}:{xms[k]}\n"
    out += "/" + account + req.raw_path
    pairs = []
    for part in req.raw_query.split("&"):
        if part:
            k, _, v = part.partition("=")
            pairs.append((k, v))
    for k, v in sorted(pairs):
        out += "\n" + k.lower() + ":" + unquote(v)
    return out


def _sign(key_b64: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key_b64), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _denied(message: str) -> HttpError:
    return HttpError(403, "AuthenticationFailed",
                     "Server failed to authenticate the request. Make sure the value of Authorization header is "
                     f"formed correctly including the signature. {message}")


def check_shared_key(req: Request, account: str, keys: list[str] | None, bearer_ok=None) -> None:
    """Raise 403 unless the request is signed with one of ``keys`` (or carries a good bearer token)."""
    auth = req.header("Authorization") or ""
    if auth.startswith("Bearer ") and bearer_ok is not None:
        if bearer_ok(auth[7:].strip()) and req.header("x-ms-file-request-intent", "").lower() == "backup":
            return
        raise _denied("The bearer token is invalid, or x-ms-file-request-intent: backup is missing.")
    if not auth.startswith("SharedKey "):
        raise _denied("The request has no SharedKey Authorization header.")
    name, _, sig = auth[len("SharedKey "):].partition(":")
    if name != account:
        raise _denied(f"The signature is for account '{name}', not '{account}'.")
    if not keys:
        raise _denied(f"The storage account '{account}' does not exist in this local cloud.")
    for with_length in (True, False):
        text = string_to_sign(req, account, with_length)
        if any(hmac.compare_digest(_sign(k, text), sig) for k in keys):
            return
    raise _denied("The MAC signature found in the HTTP request is not the same as any computed signature.")
