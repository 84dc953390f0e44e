"""Template deployments of the real ``infra/provision/inference.json`` through the real
deployments SDK: outputs, per-resource operations, what-if, validate, failures, resume."""

from __future__ import annotations

import json
import time

import pytest
from azure.core.exceptions import HttpResponseError

from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.local.template import unique_string
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import TEST_API_KEY, deploy, real_parameters

TYPES = ["Microsoft.Storage/storageAccounts", "Microsoft.Storage/storageAccounts/fileServices",
         "Microsoft.Storage/storageAccounts/fileServices/shares", "Microsoft.OperationalInsights/workspaces",
         "Microsoft.App/managedEnvironments", "Microsoft.App/managedEnvironments/storages",
         "Microsoft.App/containerApps"]


def _body(root, **overrides):
    template = json.loads((root / "infra/provision/inference.json").read_text())
    return {"properties": {"mode": "Incremental", "template": template, "parameters": real_parameters(root, **overrides)}}


def test_full_deployment_outputs_and_operations(local_factory, local_project):
    outputs = deploy(local_factory, "rg-demo", local_project)
    suffix = unique_string(f"/subscriptions/{SUB}/resourceGroups/rg-demo")[:5]
    assert outputs == {
        "SUBSCRIPTION_ID": SUB, "RESOURCE_GROUP_NAME": "rg-demo", "STORAGE_ACCOUNT_NAME": f"aistorage{suffix}",
        "FILE_SHARE_NAME": f"aifileshare{suffix}", "ACA_APP_NAME": f"aiacaapp{suffix}",
        "ACA_APP_ENDPOINT": outputs["ACA_APP_ENDPOINT"]}
    host, _, port = outputs["ACA_APP_ENDPOINT"].partition(":")
    assert host == "127.0.0.1" and port.isdigit()  # a bare host, like ACA's fqdn

    dc = local_factory.deployments(SUB)
    d = dc.deployments.get("rg-demo", "aitk-inference")
    assert d.properties.provisioning_state == "Succeeded"
    assert d.properties.duration.startswith("PT") and d.properties.timestamp is not None
    assert d.properties.parameters["inferenceApiKey"] == {"type": "SecureString"}  # never echoed
    ops = list(dc.deployment_operations.list("rg-demo", "aitk-inference"))
    targets = [o.properties.target_resource for o in ops if o.properties.target_resource]
    assert [t.resource_type for t in targets] == TYPES
    assert targets[-1].resource_name == f"aiacaapp{suffix}"
    assert targets[2].resource_name == f"aistorage{suffix}/default/aifileshare{suffix}"
    assert all(o.properties.provisioning_state == "Succeeded" for o in ops)
    assert ops[-1].properties.provisioning_operation == "EvaluateDeploymentOutput"  # as Azure lists it
    assert [d.name for d in dc.deployments.list_by_resource_group("rg-demo")] == ["aitk-inference"]


def test_default_names_are_deterministic_per_group(local_factory, local_project):
    first = deploy(local_factory, "rg-one", local_project)
    again = deploy(local_factory, "rg-one", local_project, name="second")
    other = deploy(local_factory, "rg-two", local_project)
    assert first == again  # existing resources reused, same names and endpoint
    assert other["STORAGE_ACCOUNT_NAME"] != first["STORAGE_ACCOUNT_NAME"]
    assert other["ACA_APP_ENDPOINT"] != first["ACA_APP_ENDPOINT"]


def test_operations_progress_through_states(make_local_cloud, local_project):
    # Each state lasts op_delay_s; wide enough that a poll on a loaded 2-core box sees it.
    cloud = make_local_cloud(op_delay_s=0.25)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    dc = factory.deployments(SUB)
    poller = dc.deployments.begin_create_or_update("rg1", "d1", _body(local_project))
    seen: set[tuple[str, str]] = set()
    while not poller.done():
        for o in dc.deployment_operations.list("rg1", "d1"):
            if o.properties.target_resource:
                seen.add((o.properties.target_resource.resource_type, o.properties.provisioning_state))
        time.sleep(0.02)
    assert poller.result().properties.provisioning_state == "Succeeded"
    states = {s for t, s in seen if t == "Microsoft.App/containerApps"}
    assert {"Running", "Succeeded"} <= states
    assert {s for _, s in seen} >= {"Accepted", "Running", "Succeeded"}


def test_what_if_lists_creates_then_no_change(local_factory, local_project):
    dc = local_factory.deployments(SUB)
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    before = dc.deployments.begin_what_if("rg1", "aitk-inference", _body(local_project)).result()
    assert [(c.change_type, c.resource_id.split("/providers/")[1].split("/")[0]) for c in before.changes] == [
        ("Create", t.split("/")[0]) for t in TYPES]
    deploy(local_factory, "rg1", local_project)
    after = dc.deployments.begin_what_if("rg1", "aitk-inference", _body(local_project)).result()
    assert {c.change_type for c in after.changes} == {"NoChange"}
    changed = dc.deployments.begin_what_if("rg1", "x", _body(local_project, maximumInstanceCount=5)).result()
    modify = [c for c in changed.changes if c.change_type == "Modify"]
    assert [c.resource_id.rsplit("/", 1)[-1] for c in modify] == [deploy_name(changed)]
    assert any(p.path.endswith("scale.maxReplicas") and p.after == 5 for p in modify[0].delta)


def deploy_name(result) -> str:
    return next(c.resource_id.rsplit("/", 1)[-1] for c in result.changes if "containerApps" in c.resource_id)


def test_validate_reports_template_errors(local_factory, local_project):
    dc = local_factory.deployments(SUB)
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    ok = dc.deployments.begin_validate("rg1", "d", _body(local_project)).result()
    assert ok.properties.provisioning_state == "Succeeded"
    assert len(ok.properties.validated_resources) == 7
    bad = _body(local_project, gpuProfileType="H100-Please")
    with pytest.raises(HttpResponseError, match="InvalidTemplate") as err:  # Azure answers 400, the SDK raises
        dc.deployments.begin_validate("rg1", "d", bad).result()
    assert "H100-Please" in str(err.value)
    body = _body(local_project)
    del body["properties"]["parameters"]["defaultCommands"]
    with pytest.raises(HttpResponseError, match="defaultCommands"):
        dc.deployments.begin_create_or_update("rg1", "d", body).result()
    with pytest.raises(HttpResponseError, match="AccountNameInvalid"):
        dc.deployments.begin_create_or_update("rg1", "d", _body(local_project, storageAccountName="Not_Valid")).result()


def test_fail_resource_fails_the_deployment_with_the_resource_message(local_cloud, local_factory, local_project):
    local_cloud.inject("fail_resource", resource="Microsoft.App/managedEnvironments",
                       message="The subscription has no GPU quota in eastus.", code="MaxRegionalQuotaExceeded")
    with pytest.raises(HttpResponseError) as err:
        deploy(local_factory, "rg1", local_project)
    assert "DeploymentFailed" in str(err.value) and "no GPU quota" in str(err.value)
    dc = local_factory.deployments(SUB)
    d = dc.deployments.get("rg1", "aitk-inference")
    assert d.properties.provisioning_state == "Failed"
    # ARM's nesting: DeploymentFailed > ResourceDeploymentFailure (naming the resource) > the provider's error
    wrapper = d.properties.error.details[0]
    assert wrapper.code == "ResourceDeploymentFailure" and "terminal provisioning state 'Failed'" in wrapper.message
    assert wrapper.target.endswith("/Microsoft.App/managedEnvironments/" + wrapper.target.rsplit("/", 1)[-1])
    assert wrapper.details[0].code == "MaxRegionalQuotaExceeded"
    failed = [o for o in dc.deployment_operations.list("rg1", "aitk-inference") if o.properties.provisioning_state == "Failed"]
    assert len(failed) == 1
    assert failed[0].properties.target_resource.resource_type == "Microsoft.App/managedEnvironments"
    error = failed[0].properties.status_message["error"]
    assert error["code"] == "ResourceDeploymentFailure"
    assert error["details"][0]["message"] == "The subscription has no GPU quota in eastus."
    # the fault was used up: the same deployment now succeeds, reusing what was made
    assert deploy(local_factory, "rg1", local_project)["ACA_APP_NAME"].startswith("aiacaapp")


def test_a_running_deployment_resumes_after_a_restart(make_local_cloud, tmp_path, local_project):
    state = tmp_path / "state"
    cloud = make_local_cloud(state, op_delay_s=0.1)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    factory.deployments(SUB).deployments.begin_create_or_update("rg1", "d1", _body(local_project))
    deadline = time.time() + 10
    while time.time() < deadline:
        ops = list(factory.deployments(SUB).deployment_operations.list("rg1", "d1"))
        if sum(o.properties.provisioning_state == "Succeeded" for o in ops) >= 2:
            break
        time.sleep(0.05)
    port = cloud.port
    cloud.stop()
    cloud2 = make_local_cloud(state, op_delay_s=0.01)
    assert cloud2.port == port  # the same URL, so a client can re-attach
    factory2 = ClientFactory(cloud2.endpoints, cloud2.credential())
    dc = factory2.deployments(SUB)
    assert dc.deployments.get("rg1", "d1").properties.provisioning_state in ("Running", "Succeeded")
    deadline = time.time() + 10
    while dc.deployments.get("rg1", "d1").properties.provisioning_state == "Running" and time.time() < deadline:
        time.sleep(0.05)
    d = dc.deployments.get("rg1", "d1")
    assert d.properties.provisioning_state == "Succeeded"
    ops = [o for o in dc.deployment_operations.list("rg1", "d1") if o.properties.target_resource]
    assert len(ops) == 7  # resources done before the restart were not redone
    assert d.properties.outputs["ACA_APP_NAME"]["value"].startswith("aiacaapp")


def test_existing_resources_are_reused(local_factory, local_project):
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    storage = local_factory.storage(SUB)
    storage.storage_accounts.begin_create("rg1", "mystore", {"location": "eastus", "sku": {"name": "Standard_LRS"},
                                                             "kind": "StorageV2"}).result()
    key = storage.storage_accounts.list_keys("rg1", "mystore").as_dict()["keys"][0]["value"]
    out = deploy(local_factory, "rg1", local_project, storageAccountName="mystore")
    assert out["STORAGE_ACCOUNT_NAME"] == "mystore"
    assert storage.storage_accounts.list_keys("rg1", "mystore").as_dict()["keys"][0]["value"] == key
    secrets = local_factory.container_apps(SUB).container_apps.list_secrets("rg1", out["ACA_APP_NAME"]).value
    assert [(s.name, s.value) for s in secrets] == [("inference-api-key", TEST_API_KEY)]  # the app got the key


def test_cancel_a_running_deployment(make_local_cloud, local_project):
    cloud = make_local_cloud(op_delay_s=0.1)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    dc = factory.deployments(SUB)
    poller = dc.deployments.begin_create_or_update("rg1", "d1", _body(local_project))
    dc.deployments.cancel("rg1", "d1")
    with pytest.raises(HttpResponseError):
        poller.result()
    assert dc.deployments.get("rg1", "d1").properties.provisioning_state == "Canceled"


def test_storage_account_names_are_global(local_factory, local_project):
    deploy(local_factory, "rg1", local_project, storageAccountName="sharedname")
    with pytest.raises(HttpResponseError, match="StorageAccountAlreadyTaken"):
        deploy(local_factory, "rg2", local_project, storageAccountName="sharedname")
    apps = local_factory.container_apps(SUB).container_apps.list_by_subscription()
    assert [a.name for a in apps] == [deploy_name_of(local_factory)]


def deploy_name_of(factory) -> str:
    return next(iter(factory.container_apps(SUB).container_apps.list_by_resource_group("rg1"))).name
