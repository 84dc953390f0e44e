"""The local cloud refuses what Azure refuses, in Azure's nested shapes: a container larger
than its workload profile (pre-flight), a GPU profile change on an existing environment, an
api-version the provider does not serve, and a subscription whose providers are not registered."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy
from tests.local.test_local_arm import _raw
from tests.local.test_local_deployments import _body

T4 = "Consumption-GPU-NC8as-T4"


def _error(err: pytest.ExceptionInfo) -> dict:
    return err.value.response.json()["error"]


def test_t4_with_a100_sized_container_is_refused_at_preflight_two_levels_down(local_factory, local_project):
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    dc = local_factory.deployments(SUB)
    with pytest.raises(HttpResponseError) as err:  # the template's defaults: 24 vCPU, 220Gi
        dc.deployments.begin_create_or_update("rg1", "aitk-inference", _body(local_project, gpuProfileType=T4))
    assert err.value.status_code == 400
    top = _error(err)
    assert top["code"] == "InvalidTemplateDeployment" and "See inner errors" in top["message"]
    assert top["details"][0]["code"] == "ValidationForResourceFailed"
    cause = top["details"][0]["details"][0]
    assert cause["code"] == "ContainerAppInvalidResourceTotal"
    assert "(CPU: 24, memory: 220)" in cause["message"] and "CPU 8, memory 56Gi" in cause["message"]
    assert dc.deployments.check_existence("rg1", "aitk-inference") is False  # nothing started
    fits = dc.deployments.begin_validate("rg1", "d", _body(local_project, gpuProfileType=T4, containerCpu=8,
                                                            containerMemory="56Gi")).result()
    assert fits.properties.provisioning_state == "Succeeded"


def test_gpu_profile_change_on_an_existing_environment_is_refused(local_factory, local_project):
    deploy(local_factory, "rg1", local_project)  # the A100 environment
    with pytest.raises(HttpResponseError):
        deploy(local_factory, "rg1", local_project, gpuProfileType=T4, containerCpu=8, containerMemory="56Gi")
    d = local_factory.deployments(SUB).deployments.get("rg1", "aitk-inference")
    cause = d.properties.error.details[0]
    assert d.properties.error.code == "DeploymentFailed"
    assert cause.code == "WorkloadProfileTypeCannotBeChanged"
    env = next(iter(local_factory.container_apps(SUB).managed_environments.list_by_resource_group("rg1")))
    assert f"Managed environment '{env.name}'" in cause.message and T4 in cause.message
    assert {p.workload_profile_type for p in env.workload_profiles} == {"Consumption", "Consumption-GPU-NC24-A100"}


def test_an_api_version_the_provider_does_not_serve_is_no_registered_provider(local_cloud):
    token = local_cloud.credential().get_token("x").token
    path = f"/subscriptions/{SUB}/providers/Microsoft.App/locations/westus3/availableManagedEnvironmentsWorkloadProfileTypes"
    status, body = _raw(local_cloud, "GET", path + "?api-version=2019-01-01", token)
    assert status == 400 and body["error"]["code"] == "NoRegisteredProviderFound"
    assert "API version '2019-01-01'" in body["error"]["message"] and "2024-03-01" in body["error"]["message"]
    status, body = _raw(local_cloud, "GET", path + "?api-version=2023-13-01-preview", token)  # never published
    assert status == 400 and body["error"]["code"] == "NoRegisteredProviderFound"
    status, _ = _raw(local_cloud, "GET", path + "?api-version=2024-03-01", token)
    assert status == 200


def test_template_resource_with_an_unserved_api_version_is_refused(local_factory, local_project):
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    body = _body(local_project)
    app = next(r for r in body["properties"]["template"]["resources"] if r["type"] == "Microsoft.App/containerApps")
    app["apiVersion"] = "2021-03-01"  # before Microsoft.App existed
    with pytest.raises(HttpResponseError) as err:
        local_factory.deployments(SUB).deployments.begin_validate("rg1", "d", body).result()
    assert _error(err)["code"] == "NoRegisteredProviderFound" and "'containerApps'" in _error(err)["message"]


def test_unregistered_subscription_answers_missing_registration_until_registered(local_cloud, local_factory):
    local_cloud.inject("unregistered_providers")
    rc = local_factory.resources(SUB)
    assert rc.providers.get("Microsoft.App").registration_state == "NotRegistered"
    token = local_cloud.credential().get_token("x").token
    path = (f"/subscriptions/{SUB}/providers/Microsoft.App/locations/westus3/"
            "availableManagedEnvironmentsWorkloadProfileTypes?api-version=2024-03-01")
    # raw: the SDK's own ARM policy would register the provider and retry (as az does)
    status, body = _raw(local_cloud, "GET", path, token)
    assert status == 409 and body["error"]["code"] == "MissingSubscriptionRegistration"
    assert "namespace 'Microsoft.App'" in body["error"]["message"]  # what azure-mgmt-core's policy reads
    assert body["error"]["details"][0]["target"] == "Microsoft.App"
    rc.providers.register("Microsoft.App")
    states = [rc.providers.get("Microsoft.App").registration_state for _ in range(2)]
    assert states == ["Registering", "Registered"]
    assert _raw(local_cloud, "GET", path, token)[0] == 200
    assert rc.providers.get("Microsoft.Storage").registration_state == "NotRegistered"  # still, until registered


def test_a_probe_failure_threshold_azure_refuses_is_refused_at_preflight(local_factory, local_project):
    """Azure answers a probe failureThreshold outside 1-30 with ContainerAppProbeFailureThresholdOutOfRange
    (microsoft/azure-container-apps#1100); the template once asked for 120 and only Azure refused it."""
    local_factory.resources(SUB).resource_groups.create_or_update("rg1", {"location": "eastus"})
    body = _body(local_project)
    app = next(r for r in body["properties"]["template"]["resources"] if r["type"] == "Microsoft.App/containerApps")
    startup = next(p for p in app["properties"]["template"]["containers"][0]["probes"] if p["type"] == "Startup")
    startup["failureThreshold"] = 120
    dc = local_factory.deployments(SUB)
    with pytest.raises(HttpResponseError) as err:
        dc.deployments.begin_create_or_update("rg1", "aitk-inference", body)
    cause = _error(err)["details"][0]["details"][0]
    assert cause["code"] == "ContainerAppProbeFailureThresholdOutOfRange"
    assert "'Startup' probe's FailureThreshold must be in the range of ['1', '30']" in cause["message"]
    startup["failureThreshold"] = 30
    assert dc.deployments.begin_validate("rg1", "d", body).result().properties.provisioning_state == "Succeeded"
