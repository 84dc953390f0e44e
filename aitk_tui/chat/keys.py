"""Where an API key may be sent: https only, loopback http when asked, the app's own host.

No httpx here: the back-end checks a destination before it reads the app's secret.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "://" in url else "https://" + url)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        port = None
    return (parts.hostname or "").lower().rstrip("."), port


def is_loopback(url: str) -> bool:
    import ipaddress

    host, _ = _host_port(url)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_destination_problem(url: str, *, app_fqdn: str | None = None, allow_insecure_http: bool = False) -> str | None:
    """Why an API key must not be sent to ``url`` (None when it may).

    The key goes over https only; plain http only to this machine and only when asked
    (``allow_insecure_http``). With ``app_fqdn`` (the key was read from that container
    app's secret), only to that app's own endpoint: a changed ACA_APP_ENDPOINT in a
    committed config file must not collect the key.
    """
    scheme = urlsplit(url if "://" in url else "https://" + url).scheme.lower()
    if scheme != "https":
        if scheme != "http":
            return f"{url} is not an https URL"
        if not is_loopback(url):
            return f"{url} is plain http: the API key is sent only over https"
        if not allow_insecure_http:
            return (f"{url} is plain http: the API key is sent over http only to this machine and only when asked "
                    "(--insecure-http)")
    if app_fqdn is not None and _host_port(url) != _host_port(app_fqdn):
        return f"the API key of the container app is sent only to its own endpoint ({app_fqdn}), not to {url}"
    return None
