"""Tokens for the local cloud: the credential clients use and the check the server makes.

A token is ``aitk-local.1.<expires>.<nonce>.<signature>``, signed with HMAC-SHA256 by a key
kept in ``<state_dir>/credential.key`` (mode 0600), so only someone who can read the state
folder can talk to that local cloud. Every call issues a fresh token; that is what a
Continuous Access Evaluation claims challenge needs (the server revokes the token it
challenged, and the SDK's retry must carry a new one). As with CAE, a revoked token keeps
getting the claims challenge, so every client holding it re-authenticates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo

#: The one subscription the local cloud has (fixed so that config files stay valid).
LOCAL_SUBSCRIPTION_ID = "00000000-aaaa-4aaa-8aaa-000000000001"
LOCAL_TENANT_ID = "00000000-aaaa-4aaa-8aaa-0000000000f0"
LOCAL_SUBSCRIPTION_NAME = "Local cloud (aitk)"
TOKEN_LIFETIME_S = 3600
_PREFIX = "aitk-local.1."
KEY_FILE = "credential.key"


def load_key(state_dir: Path) -> bytes:
    """The state folder's signing key, created on first use (race-free between processes)."""
    state_dir = Path(state_dir)
    path = state_dir / KEY_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)  # atomic, and fails if another process won the race
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def _sign(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def issue_token(key: bytes, lifetime_s: int = TOKEN_LIFETIME_S) -> tuple[str, int]:
    expires = int(time.time()) + lifetime_s
    payload = f"{expires}.{secrets.token_urlsafe(12)}"
    return f"{_PREFIX}{payload}.{_sign(key, payload)}", expires


class TokenVerifier:
    """Server side: checks signature and expiry, and remembers revoked tokens."""

    def __init__(self, state_dir: Path) -> None:
        self._key = load_key(state_dir)
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    def check(self, token: str | None) -> str | None:
        """None when the token is good, else the reason it is not."""
        if not token or not token.startswith(_PREFIX):
            return "The access token is missing or was not issued by this local cloud."
        payload, _, sig = token[len(_PREFIX):].rpartition(".")
        if not hmac.compare_digest(_sign(self._key, payload), sig):
            return "The access token's signature is invalid (issued for another local cloud?)."
        try:
            expires = int(payload.split(".", 1)[0])
        except ValueError:
            return "The access token is malformed."
        if expires < time.time():
            return "The access token has expired."
        with self._lock:
            if token in self._revoked:
                return "The access token was revoked."
        return None

    def is_revoked(self, token: str | None) -> bool:
        with self._lock:
            return token in self._revoked

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def issue(self) -> str:
        return issue_token(self._key)[0]


class LocalCredential:
    """A ``TokenCredential`` (and ``SupportsTokenInfo``) for one local cloud's state folder."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self._key: bytes | None = None

    def _issue(self) -> tuple[str, int]:
        if self._key is None:
            self._key = load_key(self.state_dir)
        return issue_token(self._key)

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  **kwargs: Any) -> "AccessToken":
        from azure.core.credentials import AccessToken

        token, expires = self._issue()
        return AccessToken(token, expires)

    def get_token_info(self, *scopes: str, options: dict | None = None) -> "AccessTokenInfo":
        from azure.core.credentials import AccessTokenInfo

        token, expires = self._issue()
        return AccessTokenInfo(token, expires, refresh_on=expires - TOKEN_LIFETIME_S // 2)

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalCredential":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
