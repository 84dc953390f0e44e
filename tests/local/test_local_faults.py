"""Each injected fault does what it says, and the real SDK survives the transient ones."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request

import pytest

from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.local.credential import LocalCredential
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy, make_share


def test_throttle_is_retried_after_retry_after(local_cloud, local_factory):
    local_cloud.inject("throttle", count=1, path_contains="/resourcegroups/rg1")
    rg = local_factory.resources(SUB).resource_groups
    start = time.monotonic()
    assert rg.create_or_update("rg1", {"location": "eastus"}).name == "rg1"
    assert time.monotonic() - start >= 0.9  # Retry-After: 1 was honoured
    assert local_cloud.faults.list() == []  # consumed


def test_server_errors_are_retried_on_get_and_post(local_cloud, local_factory):
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    storage = local_factory.storage(SUB)
    storage.storage_accounts.begin_create("rg1", "acct1", {"location": "eastus", "sku": {"name": "Standard_LRS"},
                                                           "kind": "StorageV2"}).result()
    local_cloud.inject("server_error", count=2, path_contains="/subscriptions?")
    local_cloud.inject("server_error", count=2, path_contains="listKeys", status=503)
    assert len(list(local_factory.subscriptions().subscriptions.list())) == 1
    assert storage.storage_accounts.list_keys("rg1", "acct1").as_dict()["keys"]
    assert local_cloud.faults.list() == []


def test_a_dropped_connection_mid_poll_is_survived(local_cloud, local_factory, local_project):
    local_cloud.inject("drop_connection", count=2, path_contains="operationStatuses")
    out = deploy(local_factory, "rg1", local_project)
    assert out["ACA_APP_NAME"].startswith("aiacaapp")
    assert local_cloud.faults.list() == []


class RecordingCredential(LocalCredential):
    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.claims: list[str | None] = []

    def get_token_info(self, *scopes, options=None):
        self.claims.append((options or {}).get("claims"))
        return super().get_token_info(*scopes, options=options)


def test_token_expired_sends_a_claims_challenge_the_sdk_answers(local_cloud):
    cred = RecordingCredential(local_cloud.state_dir)
    factory = ClientFactory(local_cloud.endpoints, cred)
    client = factory.resources(SUB)
    client.resource_groups.create_or_update("rg1", {"location": "eastus"})
    local_cloud.inject("token_expired", count=1, path_contains="/resourcegroups/rg1")
    assert client.resource_groups.get("rg1").name == "rg1"
    assert cred.claims[0] is None and '"nbf"' in (cred.claims[-1] or "")  # re-acquired with the claims
    assert local_cloud.faults.list() == []


def test_latency_delays_the_answer(local_cloud, local_factory):
    local_cloud.inject("latency", path_contains="/subscriptions?", delay_s=0.3)
    start = time.monotonic()
    list(local_factory.subscriptions().subscriptions.list())
    assert time.monotonic() - start >= 0.3


def _admin(cloud, method: str, body: dict | None = None, token: str | None = "auto"):
    req = urllib.request.Request(cloud.url + "/_local/faults", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if token == "auto":
        token = cloud.credential().get_token("x").token
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=cloud.ca_bundle), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_faults_over_http(local_cloud):
    status, fault = _admin(local_cloud, "POST", {"kind": "throttle", "count": 3, "path_contains": "/x", "retry_after": 1})
    assert status == 201 and fault["count"] == 3 and fault["options"] == {"retry_after": 1}
    assert _admin(local_cloud, "GET")[1]["value"][0]["kind"] == "throttle"
    assert _admin(local_cloud, "POST", {"kind": "nonsense"})[0] == 400
    assert _admin(local_cloud, "GET", token=None)[0] == 401
    assert _admin(local_cloud, "DELETE") == (200, {"cleared": 1})
    with pytest.raises(ValueError):
        local_cloud.inject("fail_resource")  # needs resource=


@pytest.mark.parametrize("kind", ["throttle", "server_error", "drop_connection"])
def test_file_uploads_survive_transient_faults(local_cloud, local_factory, kind):
    share = make_share(local_factory)
    local_cloud.inject(kind, count=2, path_contains="/acct1/share1/f.txt", retry_after=0)
    share.get_file_client("f.txt").upload_file(b"data")  # storage throttles with 503 ServerBusy, retried
    assert share.get_file_client("f.txt").download_file().readall() == b"data"
    assert local_cloud.faults.list() == []
