"""The local cloud's certificate authority and certificates (made once, kept in the state folder).

``tls/ca.pem`` is what every client trusts (``CloudEndpoints.ca_bundle``); the server and
the replicas present certificates for 127.0.0.1/localhost issued by that CA. The CA key
never leaves the state folder (mode 0600).
"""

from __future__ import annotations

import datetime as _dt
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import atomic_write_text

_LEAF_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: Path
    server_cert: Path  # leaf + chain
    server_key: Path
    replica_cert: Path
    replica_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        from ..endpoints import tls_verify

        return tls_verify(str(self.ca_pem))  # type: ignore[return-value] - a path gives a context


def _write_secret(path: Path, data: bytes) -> None:
    atomic_write_text(path, data.decode("ascii"))
    os.chmod(path, 0o600)


def ensure_tls(state_dir: Path) -> TlsFiles:
    """The CA and certificates under ``state_dir/tls``, created the first time."""
    import trustme  # deferred: only the local cloud needs it

    folder = Path(state_dir) / "tls"
    files = TlsFiles(
        ca_pem=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        replica_cert=folder / "replica.pem",
        replica_key=folder / "replica.key",
    )
    if all(p.is_file() for p in (files.ca_pem, files.server_cert, files.server_key,
                                  files.replica_cert, files.replica_key)) and (folder / "ca.key").is_file():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = folder / "ca.key"
    if files.ca_pem.is_file() and ca_key.is_file():
        ca = trustme.CA.from_pem(files.ca_pem.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA(organization_name="aitk local cloud")
        _write_secret(ca_key, ca.private_key_pem.bytes())
        atomic_write_text(files.ca_pem, ca.cert_pem.bytes().decode("ascii"))
    not_after = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=3650)
    for cert_path, key_path in ((files.server_cert, files.server_key), (files.replica_cert, files.replica_key)):
        leaf = ca.issue_cert(*_LEAF_NAMES, not_after=not_after)
        _write_secret(key_path, leaf.private_key_pem.bytes())
        atomic_write_text(cert_path, b"".join(b.bytes() for b in leaf.cert_chain_pems).decode("ascii"))
    return files
