"""ARM basics against the local cloud, through the real SDK clients: subscriptions, tenants,
resource groups, generic resources, authentication and the 501 of an unserved route."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB


def _raw(cloud, method: str, path: str, token: str | None = None, body: dict | None = None):
    req = urllib.request.Request(cloud.url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    ctx = ssl.create_default_context(cafile=cloud.ca_bundle)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_one_ready_subscription_and_tenant(local_factory):
    client = local_factory.subscriptions()
    subs = list(client.subscriptions.list())
    assert [(s.subscription_id, s.state) for s in subs] == [(SUB, "Enabled")]
    assert "Local cloud" in subs[0].display_name
    assert client.subscriptions.get(SUB).display_name == subs[0].display_name
    assert [t.tenant_id for t in client.tenants.list()] == [subs[0].tenant_id]
    assert "eastus" in {loc.name for loc in client.subscriptions.list_locations(SUB)}


def test_resource_groups_create_list_exists_delete(local_factory):
    rg = local_factory.resources(SUB).resource_groups
    assert rg.check_existence("rg-a") is False
    created = rg.create_or_update("rg-a", {"location": "westus3", "tags": {"app": "aitk"}})
    assert (created.name, created.location, created.properties.provisioning_state) == ("rg-a", "westus3", "Succeeded")
    assert rg.create_or_update("rg-a", {"location": "westus3"}).name == "rg-a"  # 200 on the second PUT
    assert rg.check_existence("rg-a") is True
    assert rg.check_existence("RG-A") is True  # names are case-insensitive
    assert [g.name for g in rg.list()] == ["rg-a"]
    assert rg.get("rg-a").tags == {"app": "aitk"}
    rg.begin_delete("rg-a").result()
    assert rg.check_existence("rg-a") is False
    with pytest.raises(ResourceNotFoundError):
        rg.get("rg-a")


def test_unknown_subscription_is_404(local_factory):
    with pytest.raises(ResourceNotFoundError, match="SubscriptionNotFound"):
        local_factory.resources("11111111-2222-3333-4444-555555555555").resource_groups.get("x")


def test_paths_are_case_insensitive_and_unknown_routes_say_501(local_cloud):
    token = local_cloud.credential().get_token("x").token
    for path in (f"/subscriptions/{SUB}/resourceGroups/rg1", f"/SUBSCRIPTIONS/{SUB}/resourcegroups/rg1"):
        status, _ = _raw(local_cloud, "PUT", path + "?api-version=2021-04-01", token, {"location": "eastus"})
        assert status in (200, 201)
    status, body = _raw(local_cloud, "GET", f"/subscriptions/{SUB}/resourcegroups/RG1?api-version=2021-04-01", token)
    assert status == 200 and body["name"] == "rg1"
    for path in (f"/subscriptions/{SUB}/providers/Microsoft.Nope/things/a/b?x=1", f"/subscriptions/{SUB}/nothing/here?x=1"):
        status, body = _raw(local_cloud, "GET", path, token)
        assert status == 501
        assert f"GET {path}" in body["error"]["message"]


def test_requests_without_a_valid_token_are_refused(local_cloud):
    status, body = _raw(local_cloud, "GET", "/subscriptions?api-version=2022-12-01")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    status, _ = _raw(local_cloud, "GET", "/subscriptions?api-version=2022-12-01", token="aitk-local.1.9999999999.x.y")
    assert status == 401

    class Stranger:  # a token signed by another state folder's key
        def get_token(self, *scopes, **kw):
            from azure.core.credentials import AccessToken
            return AccessToken("aitk-local.1.9999999999.abc.forged", 9999999999)

    with pytest.raises(ClientAuthenticationError):
        list(ClientFactory(local_cloud.endpoints, Stranger()).subscriptions().subscriptions.list())


def test_generic_resources_put_get_list_and_parent_check(local_factory):
    sub = local_factory.resources(SUB)
    sub.resource_groups.create_or_update("rg1", {"location": "eastus"})
    storage = local_factory.storage(SUB)
    acct = storage.storage_accounts.begin_create(
        "rg1", "acct1", {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}).result()
    assert acct.provisioning_state == "Succeeded"
    assert acct.primary_endpoints.file.endswith("/acct1/")
    keys = storage.storage_accounts.list_keys("rg1", "acct1").as_dict()["keys"]
    assert [k["keyName"] for k in keys] == ["key1", "key2"] and keys[0]["value"] != keys[1]["value"]
    again = storage.storage_accounts.list_keys("rg1", "acct1").as_dict()["keys"]
    assert again == keys  # generated once, persisted
    storage.file_shares.create("rg1", "acct1", "share1", {"properties": {"shareQuota": 10}})
    assert [r.name for r in sub.resources.list_by_resource_group("rg1")] == [
        "acct1", "acct1/default", "acct1/default/share1"]
    with pytest.raises(HttpResponseError, match="ParentResourceNotFound"):
        storage.file_shares.create("rg1", "nosuchacct", "share1", {})
    with pytest.raises(HttpResponseError, match="AccountNameInvalid"):
        storage.storage_accounts.begin_create("rg1", "Bad_Name", {"location": "eastus", "sku": {"name": "Standard_LRS"},
                                                                   "kind": "StorageV2"}).result()
