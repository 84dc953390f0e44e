"""What the user is told when the local cloud refuses what Azure refuses: a container larger
than its GPU profile, a GPU profile change on an existing environment, a provider error two
levels down (pre-flight and while running), and a subscription with unregistered providers."""

from __future__ import annotations

import pytest

from aitk_tui.config.parameters import ParametersDocument
from aitk_tui.config.state import ProjectState
from aitk_tui.events import Done, Failed, Info, ResourceProgress
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB

pytestmark = pytest.mark.timeout(90)
T4 = "Consumption-GPU-NC8as-T4"


async def _provision(session, params: ParametersDocument | None = None, group: str = "rg-demo") -> list:
    ProjectState.update(session.project.state_path, project_id="demo")  # its deployment: aitk-inference-demo
    await session.create_resource_group(SUB, group, "eastus")
    params = params or ParametersDocument.load(session.project.parameters_path)
    return [e async for e in session.provision(SUB, group, params)]


def _params(session, **values) -> ParametersDocument:
    doc = ParametersDocument.load(session.project.parameters_path)
    for k, v in values.items():
        doc._raw["parameters"][k] = {"value": v}  # as a hand-edited file would hold them
    return doc


def _deployments(session) -> list:
    return list(session.factory.deployments(SUB).deployments.list_by_resource_group("rg-demo"))


async def test_t4_with_a100_sized_container_is_refused_before_anything_is_sent(session):
    events = await _provision(session, _params(session, gpuProfileType=T4))
    failed = events[-1]
    assert isinstance(failed, Failed) and len(events) == 1
    assert failed.message.startswith("Parameter containerCpu is not valid: 24 vCPU is more than the "
                                     "Consumption-GPU-NC8as-T4 profile offers (8 vCPU, 56 GiB)")
    assert _deployments(session) == []


async def test_local_cloud_refusal_of_the_size_reaches_the_user_with_its_cause(session, monkeypatch):
    # A file aitk did not check (another tool wrote it): the cloud refuses it, nested, and the cause shows.
    monkeypatch.setattr(ParametersDocument, "validate", lambda self: None)
    events = await _provision(session, _params(session, gpuProfileType=T4))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert "See inner errors" not in failed.message
    assert failed.message.startswith("Could not start provisioning: Microsoft.App/containerApps: "
                                     "ContainerAppInvalidResourceTotal: The total requested CPU and memory "
                                     "resources for this application (CPU: 24, memory: 220) is invalid.")
    assert "Consumption-GPU-NC8as-T4 offers 8 vCPU and 56 GiB" in failed.message
    assert "InvalidTemplateDeployment > ValidationForResourceFailed > ContainerAppInvalidResourceTotal" in failed.detail
    assert _deployments(session) == []


async def test_gpu_profile_change_is_refused_before_sending_naming_the_environment(session):
    assert isinstance((await _provision(session))[-1], Done)  # the A100 environment
    before = session.factory.deployments(SUB).deployments.get("rg-demo", "aitk-inference-demo")
    events = await _provision(session, _params(session, gpuProfileType=T4, containerCpu=8, containerMemory="56Gi"))
    failed = events[-1]
    env = next(iter(session.factory.container_apps(SUB).managed_environments.list_by_resource_group("rg-demo")))
    assert isinstance(failed, Failed)
    assert failed.message == (f"Environment {env.name} was created with the GPU profile Consumption-GPU-NC24-A100, "
                              "and Azure sets a GPU profile only when an environment is created, so it cannot "
                              f"become {T4}.")
    assert "acaEnvironmentName=" in failed.detail and "aitk down --all" in failed.detail
    after = session.factory.deployments(SUB).deployments.get("rg-demo", "aitk-inference-demo")
    assert after.properties.correlation_id == before.properties.correlation_id  # nothing was submitted
    # a new environment name is the way out: it provisions
    again = await _provision(session, _params(session, gpuProfileType=T4, containerCpu=8, containerMemory="56Gi",
                                              acaEnvironmentName="aienv-t4"))
    assert isinstance(again[-1], Done), again[-1]


async def test_quota_refused_at_preflight_shows_the_cause_and_how_to_ask(session, local_cloud):
    local_cloud.inject("fail_resource", resource="Microsoft.App/containerApps", at="preflight",
                       code="MaxRegionalQuotaExceeded", message="Cannot have more than 0 SubscriptionNCA100Gpus in "
                                                                "region eastus.")
    failed = (await _provision(session))[-1]
    assert isinstance(failed, Failed)
    assert ("Could not start provisioning: MaxRegionalQuotaExceeded: Cannot have more than 0 SubscriptionNCA100Gpus "
            "in region eastus.") in failed.message
    assert "Request serverless GPU quota" in failed.message


async def test_runtime_failure_shows_the_provider_error_in_the_row_and_the_failure(session, local_cloud):
    local_cloud.inject("fail_resource", resource="Microsoft.App/managedEnvironments", code="ManagedEnvironmentCapacityHeavyUsageError",
                       message="The region is under heavy usage; try another region.")
    events = await _provision(session)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.message.startswith("Provisioning failed: Microsoft.App/managedEnvironments 'aienv")
    assert "': ManagedEnvironmentCapacityHeavyUsageError: The region is under heavy usage" in failed.message
    assert failed.detail.startswith("DeploymentFailed > ResourceDeploymentFailure > ManagedEnvironmentCapacityHeavyUsageError")
    row = next(e for e in events if isinstance(e, ResourceProgress) and e.state == "Failed")
    assert "ManagedEnvironmentCapacityHeavyUsageError" in row.message


async def test_unregistered_providers_are_registered_and_waited_for(session, local_cloud):
    local_cloud.inject("unregistered_providers")
    events = await _provision(session)
    assert isinstance(events[-1], Done), events[-1]
    infos = [e.message for e in events if isinstance(e, Info)]
    assert any(m.startswith("Registering Microsoft.App, Microsoft.OperationalInsights, Microsoft.Storage") for m in infos)
    assert "Registered Microsoft.App, Microsoft.OperationalInsights, Microsoft.Storage." in infos
    rc = session.factory.resources(SUB)
    assert {rc.providers.get(ns).registration_state for ns in ("Microsoft.App", "Microsoft.Storage")} == {"Registered"}


async def test_registration_refused_says_how_to_register(session, local_cloud, monkeypatch):
    from azure.core.exceptions import HttpResponseError

    local_cloud.inject("unregistered_providers", namespaces=["Microsoft.App"])
    real = session.factory.resources

    def no_permission(sub):
        client = real(sub)

        def refuse(ns, **kw):
            err = HttpResponseError(message="The client does not have authorization to perform action "
                                            "'Microsoft.App/register/action'.")
            err.status_code = 403
            raise err
        client.providers.register = refuse
        return client

    monkeypatch.setattr(session.factory, "resources", no_permission)
    failed = (await _provision(session))[-1]
    assert isinstance(failed, Failed)
    assert failed.message == ("The subscription is not registered for Microsoft.App, and aitk could not register it: "
                              "run `az provider register --namespace Microsoft.App --wait` (needs Contributor on the "
                              "subscription).")


async def test_an_environment_made_elsewhere_under_the_default_name_is_checked_too(session):
    """AI Toolkit's fine-tuning deployment makes the same default-named environment (aienv +
    5 characters); one made with the T4 refuses the A100 before anything is sent."""
    from aitk_tui.local.template import unique_string

    await session.create_resource_group(SUB, "rg-demo", "eastus")
    name = "aienv" + unique_string(f"/subscriptions/{SUB}/resourceGroups/rg-demo")[:5]
    envs = session.factory.container_apps(SUB).managed_environments
    envs.begin_create_or_update("rg-demo", name, {"location": "eastus", "properties": {"workloadProfiles": [
        {"name": "Consumption", "workloadProfileType": "Consumption"},
        {"name": "GPU", "workloadProfileType": T4}]}}).result()
    failed = (await _provision(session))[-1]
    assert isinstance(failed, Failed)
    assert failed.message.startswith(f"Environment {name} was created with the GPU profile {T4}")
    assert _deployments(session) == []


async def test_no_gpu_quota_is_said_before_anything_is_created(session, local_cloud):
    local_cloud.inject("no_gpu_quota")
    events = await _provision(session)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.message == ("This subscription has no Consumption-GPU-NC24-A100 quota left in eastus "
                              "(ManagedEnvironmentConsumptionNCA100Gpus: 0 of 0 used), so Azure would refuse the "
                              "container app.")
    assert failed.detail.startswith("Serverless GPUs also need quota: request it in the Azure portal (Quotas")
    assert _deployments(session) == []
    assert not any(isinstance(e, ResourceProgress) for e in events)
