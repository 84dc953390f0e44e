"""The local cloud lets nothing through (issue 12, items 3, 5, 6, 7).

Requests are signed with the storage account's real key by azure-storage's own
``SharedKeyCredentialPolicy`` and sent as raw bytes over TLS (``http.client``), so the
path reaches the server exactly as an attacker would write it.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from email.utils import formatdate
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.fileshare._shared.authentication import SharedKeyCredentialPolicy

from tests.fixtures_local import make_share

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def share(local_cloud, local_factory):
    return make_share(local_factory)


def _ctx(cloud) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cloud.ca_bundle)


def signed(cloud, key: str, method: str, path: str, headers: dict[str, str] | None = None,
           body: bytes = b"", account: str = "acct1") -> tuple[int, dict[str, str], bytes]:
    """Send ``method path`` (raw, as written) signed with SharedKey; (status, headers, body)."""
    url = cloud.url + path
    req = HttpRequest(method, url, headers={"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2025-07-05",
                                            **({"Content-Length": str(len(body))} if body or method == "PUT" else {}),
                                            **(headers or {})})
    SharedKeyCredentialPolicy(account, key).on_request(PipelineRequest(req, PipelineContext(None)))
    parts = urlsplit(cloud.url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=_ctx(cloud), timeout=10)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in req.headers.items():
            conn.putheader(k, v)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# -- 5. every path stays inside its share ---------------------------------------------------
@pytest.mark.parametrize("path", [
    "/acct1/..%2F..%2F/credential.key",  # the share name decoded to "../.."
    "/acct1/..%2F../credential.key",
    "/acct1/%2E%2E%2F%2E%2E/credential.key",
    "/acct1/%2Fetc/passwd",  # an absolute "share name"
    "/acct1/%2F/etc/passwd",
    "/acct1/share1/..%2F..%2F..%2Fcredential.key",  # the path decoded to ../../..
    "/acct1/share1/%2E%2E/%2E%2E/%2E%2E/credential.key",
    "/acct1/share1/..%5C..%5C..%5Ccredential.key",  # backslashes
])
def test_reads_outside_the_share_get_400(local_cloud, share, path):
    assert (local_cloud.state_dir / "credential.key").is_file()
    status, headers, body = signed(local_cloud, share.key, "GET", path)
    assert status == 400, (status, body[:200])
    assert headers["x-ms-error-code"] in ("InvalidResourceName", "InvalidUri")
    assert b"root:" not in body and local_cloud.state_dir.joinpath("credential.key").read_bytes() not in body


def test_an_absolute_path_inside_a_share_stays_in_the_share(local_cloud, share):
    status, headers, body = signed(local_cloud, share.key, "GET", "/acct1/share1/%2Fetc%2Fpasswd")
    assert status == 404 and headers["x-ms-error-code"] == "ParentNotFound" and b"root:" not in body


def test_a_write_outside_the_share_gets_400_and_writes_nothing(local_cloud, share):
    target = local_cloud.state_dir / "evil.txt"
    status, headers, _ = signed(local_cloud, share.key, "PUT", "/acct1/..%2F../evil.txt",
                                {"x-ms-type": "file", "x-ms-content-length": "5"})
    assert status == 400 and headers["x-ms-error-code"] == "InvalidResourceName"
    status, _, _ = signed(local_cloud, share.key, "PUT", "/acct1/share1/..%2F..%2F..%2Fevil.txt",
                          {"x-ms-type": "file", "x-ms-content-length": "5"})
    assert status == 400
    assert not target.exists()


def test_delete_share_with_a_crafted_name_deletes_nothing(local_cloud, share):
    tls = local_cloud.state_dir / "tls"
    assert tls.is_dir()
    for path in ("/acct1/..%2F..%2Ftls?restype=share", "/acct1/..?restype=share", "/acct1/%2Ftmp?restype=share"):
        status, headers, _ = signed(local_cloud, share.key, "DELETE", path)
        assert status == 400 and headers["x-ms-error-code"] == "InvalidResourceName", path
    assert tls.is_dir() and (local_cloud.state_dir / "credential.key").is_file()
    assert (local_cloud.files_root / "acct1" / "share1").is_dir()


def test_a_link_a_replica_made_in_the_share_is_not_followed(local_cloud, share, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours\n")
    share_dir = local_cloud.files_root / "acct1" / "share1"
    (share_dir / "escape").symlink_to(outside)  # what code running in a replica can do to /mount
    (share_dir / "file-link").symlink_to(outside / "secret.txt")
    for path in ("/acct1/share1/escape/secret.txt", "/acct1/share1/file-link"):
        status, headers, body = signed(local_cloud, share.key, "GET", path)
        assert status == 400 and b"not yours" not in body, path
    status, _, _ = signed(local_cloud, share.key, "PUT", "/acct1/share1/escape/new.txt",
                          {"x-ms-type": "file", "x-ms-content-length": "1"})
    assert status == 400 and not (outside / "new.txt").exists()
    names = [e["name"] for e in share.list_directories_and_files()]
    assert "escape" not in names and "file-link" not in names


# -- 3. names Azure Files refuses are refused locally too ------------------------------------
@pytest.mark.parametrize("name", ["bad:name.py", "what%3F.txt", "pipe%7C.txt", "lt%3C.txt", "quote%22.txt",
                                  "star%2A.txt", "trailing.", "trailing%20", "ctl%01.txt", "a" * 256, "CON"])
def test_names_azure_rejects_get_invalid_resource_name(local_cloud, share, name):
    status, headers, body = signed(local_cloud, share.key, "PUT", f"/acct1/share1/{name}",
                                   {"x-ms-type": "file", "x-ms-content-length": "1"})
    assert status == 400, (name, status, body[:200])
    assert headers["x-ms-error-code"] == "InvalidResourceName"
    assert sorted(p.name for p in (local_cloud.files_root / "acct1" / "share1").iterdir()) == []


def test_the_sdk_sees_invalid_resource_name_for_a_bad_file_name(share):
    with pytest.raises(HttpResponseError) as e:
        share.get_file_client("bad:name.py").upload_file(b"x")
    assert e.value.status_code == 400 and str(getattr(e.value.error_code, "value", e.value.error_code)) == \
        "InvalidResourceName"
    share.get_file_client("good name.py").upload_file(b"x")  # spaces inside a name are fine


# -- 6. bodies: auth first, Content-Length checked, capped ----------------------------------------
def _raw(cloud, head: bytes, body: bytes = b"", read_timeout: float = 5.0) -> tuple[float, bytes]:
    parts = urlsplit(cloud.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=read_timeout)
    tls = _ctx(cloud).wrap_socket(sock, server_hostname=parts.hostname)
    start = time.monotonic()
    try:
        tls.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        return time.monotonic() - start, data
    finally:
        tls.close()


@pytest.mark.parametrize("path", ["/acct1/share1/f?comp=range",
                                  "/subscriptions/00000000-aaaa-4aaa-8aaa-000000000001/resourcegroups/rg9"
                                  "?api-version=2024-03-01",
                                  "/_local/faults"])
def test_an_unauthenticated_huge_body_is_refused_without_being_read(local_cloud, share, path):
    head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {3 * 512 * 1024 * 1024}\r\n"
            "Content-Type: application/json\r\n\r\n").encode()
    elapsed, answer = _raw(local_cloud, head, b"{" * 1000)  # 1.5 GB announced, 1 KB sent
    status = int(answer.split(b" ", 2)[1]) if answer else None
    assert status in (401, 403), answer[:300]
    assert elapsed < 4, f"the server waited {elapsed:.1f} s for a body it should not read"


def test_an_authenticated_body_over_the_limit_gets_413_unread(local_cloud, share):
    share.get_file_client("f").create_file(8 * 1024 * 1024)
    too_big = 4 * 1024 * 1024 + 1
    status, headers, _ = signed(local_cloud, share.key, "PUT", "/acct1/share1/f?comp=range",
                                {"x-ms-range": f"bytes=0-{too_big - 1}", "x-ms-write": "update",
                                 "Content-Length": str(too_big)}, body=b"")
    assert status == 413 and headers["x-ms-error-code"] == "RequestBodyTooLarge"


@pytest.mark.parametrize("length", ["-1", "1e9", "18446744073709551616", "12abc"])
def test_a_bad_content_length_gets_400(local_cloud, share, length):
    head = f"PUT /acct1/share1/f?comp=range HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
    _, answer = _raw(local_cloud, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


@pytest.mark.parametrize("value", ["-1", "18446744073709551616", "4398046511105", "nan"])
def test_a_file_size_out_of_range_gets_400(local_cloud, share, value):
    status, headers, _ = signed(local_cloud, share.key, "PUT", "/acct1/share1/big",
                                {"x-ms-type": "file", "x-ms-content-length": value})
    assert status == 400 and headers["x-ms-error-code"] == "InvalidHeaderValue"


def test_the_sdk_still_uploads_ranges_of_the_maximum_size(share):
    data = bytes(range(256)) * (4 * 1024 * 1024 // 256) * 2  # two ranges of exactly 4 MiB
    share.get_file_client("max.bin").upload_file(data)
    assert share.get_file_client("max.bin").download_file().readall() == data


# -- 7. /_local/info is for holders of the key ------------------------------------------------
def test_local_info_needs_the_clouds_token(local_cloud):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(local_cloud.url + "/_local/info", context=_ctx(local_cloud), timeout=5)
    assert e.value.code == 401
    assert b"state_dir" not in e.value.read()
    token = local_cloud.credential().get_token("https://management.azure.com/.default").token
    req = urllib.request.Request(local_cloud.url + "/_local/info", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=_ctx(local_cloud), timeout=5) as r:
        info = json.loads(r.read())
    assert info["state_dir"] == str(local_cloud.state_dir)


def test_an_account_without_shared_key_access_refuses_the_key(local_factory):
    """As Azure does: the template keeps allowSharedKeyAccess true because the ACA mount and
    `aitk deploy` use the key; an account that turned it off refuses SharedKey requests."""
    from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

    local_factory.resources(LOCAL_SUBSCRIPTION_ID).resource_groups.create_or_update("rg1", {"location": "eastus"})
    storage = local_factory.storage(LOCAL_SUBSCRIPTION_ID)
    storage.storage_accounts.begin_create("rg1", "nokeyacct", {
        "location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2",
        "properties": {"allowSharedKeyAccess": False}}).result()
    key = storage.storage_accounts.list_keys("rg1", "nokeyacct").as_dict()["keys"][0]["value"]
    with pytest.raises(HttpResponseError) as e:
        local_factory.share("nokeyacct", "share1", key).create_share()
    assert e.value.status_code == 403 and str(getattr(e.value.error_code, "value", e.value.error_code)) == "KeyBasedAuthenticationNotPermitted"


def _arm_put(cloud, path: str, body: bytes, chunked: bool) -> bytes:
    token = cloud.credential().get_token("https://management.azure.com/.default").token
    if chunked:
        piece = 1024 * 1024
        framed = b"".join(b"%x\r\n" % len(body[i:i + piece]) + body[i:i + piece] + b"\r\n"
                          for i in range(0, len(body), piece)) + b"0\r\n\r\n"
        head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        return _raw(cloud, head, framed, read_timeout=30)[1]
    head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return _raw(cloud, head, body, read_timeout=30)[1]


@pytest.mark.parametrize("chunked", [False, True])
def test_the_4_mib_body_cap_holds_for_arm_routes_too(local_cloud, chunked):
    """Not only Put Range (which checks its range itself): an ARM PUT with a body over 4 MiB is
    413, whether the length is announced or the body chunked (the server's own cap)."""
    from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

    path = f"/subscriptions/{LOCAL_SUBSCRIPTION_ID}/resourcegroups/rg-big?api-version=2024-03-01"
    over = json.dumps({"location": "eastus", "tags": {"pad": "x" * (4 * 1024 * 1024)}}).encode()
    answer = _arm_put(local_cloud, path, over, chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    under = json.dumps({"location": "eastus", "tags": {"pad": "x" * 1000}}).encode()
    assert _arm_put(local_cloud, path, under, chunked).split(b" ", 2)[1] in (b"200", b"201")
