"""Where a cloud answers: the one type both the back-end and the local cloud know.

The real cloud and the local cloud differ only by these endpoints (ARM URL, how a storage
account's Files URL is formed, the CA bundle to trust) and the credential. This module is
neutral ground: :mod:`aitk_tui.cloud` builds SDK clients from it and :mod:`aitk_tui.local`
publishes its address in it, and neither of those packages imports the other.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = ["ARM_SCOPE", "AZURE", "CloudEndpoints", "tls_verify"]

ARM_SCOPE = "https://management.azure.com/.default"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class CloudEndpoints:
    name: str  # "azure" or "local"
    arm_url: str = "https://management.azure.com"
    # str.format template with {account}; for 127.0.0.1 the SDK reads the account from the path.
    files_account_url: str = "https://{account}.file.core.windows.net"
    ca_bundle: str | None = None  # PEM file trusted on every connection (local cloud's CA)
    polling_interval: float | None = None  # None: the SDK default / Retry-After
    retry_backoff_factor: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.name == "local"

    @property
    def verify(self) -> str | bool:
        """What every connection to this cloud trusts: its CA bundle, else the system's store."""
        return self.ca_bundle or True

    def trust_for(self, url: str) -> str | bool:
        """What a connection to ``url`` (any host the user typed) trusts: this cloud's CA for
        loopback hosts (the local cloud's apps), the system's store for everything else, so a
        private CA is never what vouches for a public host."""
        host = urlsplit(url if "://" in url else f"https://{url}").hostname or ""
        return self.ca_bundle if self.ca_bundle and host in _LOOPBACK_HOSTS else True


AZURE = CloudEndpoints("azure")


def tls_verify(verify: str | bool | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a trust setting: a CA bundle path becomes an SSL context
    (httpx deprecates passing a path), anything else is passed on."""
    if isinstance(verify, str):
        import ssl

        return ssl.create_default_context(cafile=verify)
    return verify
