"""Azure's documented and reported answers, replayed through the back-end with the real SDK
clients (only the transport is replaced: see ``replay.py``): what the user is told.

Shapes:
- pre-flight refusal: InvalidTemplateDeployment > ValidationForResourceFailed >
  ContainerAppInvalidResourceTotal, as Azure/bicep#14569 shows Azure answering;
- runtime failure: DeploymentFailed > ResourceDeploymentFailure > the provider's error,
  and the failed operation's statusMessage with the same chain (the deployment-operations
  shape of azure-rest-api-specs' DeploymentOperations examples);
- the older runtime shape, the inner statusMessage as a JSON string in a ``Conflict``
  detail (Azure/reddog-containerapps#12);
- 429 with Retry-After on the submit; a cancelled deployment;
- AvailableWorkloadProfiles_Get (azure-rest-api-specs, Microsoft.App 2025-01-01), whose
  entries' ``name`` is not always their type; Usages_List (same version), which names no GPU
  quota, so the quota check stays silent.
"""

from __future__ import annotations

import json

import pytest

from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.config.parameters import ParametersDocument
from aitk_tui.events import Done, Failed, Info, ResourceProgress

from .replay import SUB, Reply, ReplayTransport, arm_error, replay_session

pytestmark = pytest.mark.timeout(60)
RG = "rg-infer"
DEP = r"/resourcegroups/rg-infer/providers/Microsoft\.Resources/deployments/aitk-inference-replay"
APP_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/containerApps/aiacaappx"
TERMINAL = ("The resource write operation failed to complete successfully, because it reached terminal "
            "provisioning state 'Failed'.")
INVALID_TOTAL = ("The total requested CPU and memory resources for this application (CPU: 24, memory: 220) is "
                 "invalid. Total CPU and memory for all containers defined in a Container App must add up to one "
                 "of the following CPU - Memory combinations: [cpu: 8, memory: 56Gi]")
QUOTA = "Cannot have more than 0 SubscriptionNCA100Gpus in region westus3."


def _profiles(*extra: dict) -> dict:
    """Microsoft's AvailableWorkloadProfiles_Get example (its D8 entry is named Dedicated-D4), plus GPU entries."""
    base = f"/subscriptions/{SUB}/providers/Microsoft.App/availableManagedEnvironmentsWorkloadProfileTypes"
    entries = [
        {"location": "West US 3", "name": "Dedicated-D4", "id": f"{base}/Dedicated-D4", "type": "x",
         "properties": {"displayName": "Dedicated-D4", "category": "General purpose D-series", "cores": 4,
                        "memoryGiB": 16, "applicability": "LocationDefault"}},
        {"location": "West US 3", "name": "Dedicated-D4", "id": f"{base}/Dedicated-D8", "type": "x",
         "properties": {"displayName": "Dedicated-D8", "category": "General purpose D-series", "cores": 8,
                        "memoryGiB": 32, "applicability": "Custom"}},
        *extra,
    ]
    return {"value": entries}


def _gpu_entry(profile: str, name: str | None = None) -> dict:
    base = f"/subscriptions/{SUB}/providers/Microsoft.App/availableManagedEnvironmentsWorkloadProfileTypes"
    return {"location": "West US 3", "name": name or profile, "id": f"{base}/{profile}", "type": "x",
            "properties": {"displayName": profile, "category": "GPU", "cores": 24, "memoryGiB": 220, "gpus": 1,
                           "applicability": "Custom"}}


def _baseline(profiles: dict | None = None) -> list[Reply]:
    not_found = (404, {"error": {"code": "ResourceNotFound", "message": "not found"}})
    return [
        Reply("GET", rf"/resourcegroups/{RG}\?", [(200, {"id": f"/subscriptions/{SUB}/resourceGroups/{RG}",
                                                           "name": RG, "location": "westus3",
                                                           "properties": {"provisioningState": "Succeeded"}})]),
        Reply("GET", r"/providers/Microsoft\.(App|OperationalInsights|Storage)\?",
              [(200, {"namespace": "Microsoft.App", "registrationState": "Registered"})]),
        Reply("GET", r"availableManagedEnvironmentsWorkloadProfileTypes",
              [(200, profiles or _profiles(_gpu_entry("Consumption-GPU-NC24-A100")))]),
        Reply("GET", r"/providers/Microsoft\.App/locations/[^/]+/usages\?", [(200, {"value": [  # Usages_List example
            {"currentValue": 5, "limit": 10, "unit": "Count",
             "name": {"localizedValue": "ManagedEnvironmentCount", "value": "ManagedEnvironmentCount"}},
            {"currentValue": 3, "limit": 20, "unit": "Count",
             "name": {"localizedValue": "ManagedEnvironmentCores", "value": "ManagedEnvironmentCores"}}]})]),
        Reply("POST", r"/listSecrets", [not_found]),
        Reply("GET", r"/managedEnvironments/", [not_found]),
    ]


def _params(local_project) -> ParametersDocument:
    doc = ParametersDocument.load(local_project / "infra/provision/inference.parameters.json")
    doc.set("location", "westus3")
    return doc


async def _run(local_project, rules: list[Reply]) -> tuple[list, ReplayTransport]:
    transport = ReplayTransport(rules)
    session = replay_session(local_project, transport)
    events = [e async for e in session.provision(SUB, RG, _params(local_project))]
    return events, transport


def _deployment(state: str, error: dict | None = None) -> dict:
    props: dict = {"provisioningState": state, "mode": "Incremental", "correlationId": "c"}
    if error:
        props["error"] = error
    return {"id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Resources/deployments/aitk-inference-replay",
            "name": "aitk-inference-replay", "properties": props}


def _submitted(final_status: str, deployment: dict, operations: list[dict]) -> list[Reply]:
    status_url = f"https://management.replay.invalid/subscriptions/{SUB}{DEP.replace(chr(92), '')}/operationStatuses/1"
    return [
        Reply("GET", DEP + r"\?", [(404, {"error": {"code": "DeploymentNotFound", "message": "no"}}), (200, deployment)]),
        Reply("PUT", DEP + r"\?", [(201, _deployment("Accepted"), {"Azure-AsyncOperation": status_url})]),
        Reply("GET", r"/operationStatuses/", [(200, {"status": "Running"}), (200, {"status": final_status,
                                                                                    **({"error": deployment["properties"]["error"]}
                                                                                       if "error" in deployment["properties"] else {})})]),
        Reply("GET", rf"/resourcegroups/{RG}/deployments/aitk-inference-replay/operations\?", [(200, {"value": operations})]),
    ]


def _operation(resource_type: str, name: str, state: str, status_message: object = None) -> dict:
    props: dict = {"provisioningState": state, "provisioningOperation": "Create", "timestamp": "2025-01-01T00:00:00Z",
                   "targetResource": {"id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/{resource_type}/{name}",
                                      "resourceType": resource_type, "resourceName": name}}
    if status_message is not None:
        props["statusCode"] = "Conflict"
        props["statusMessage"] = status_message
    return {"id": f"{DEP}/operations/{name}", "operationId": name, "properties": props}


async def test_preflight_refusal_shows_the_cause_two_levels_down(local_project):
    refusal = {"error": arm_error(
        "InvalidTemplateDeployment", "The template deployment 'aitk-inference-replay' is not valid according to the "
        "validation procedure. The tracking id is 'f185185a'. See inner errors for details.",
        [arm_error("ValidationForResourceFailed", "Validation failed for a resource. Check 'Error.Details[0]' "
                   "for more information.", [arm_error("ContainerAppInvalidResourceTotal", INVALID_TOTAL)])])}
    rules = _baseline() + [Reply("GET", DEP + r"\?", [(404, {"error": {"code": "DeploymentNotFound", "message": "no"}})]),
                           Reply("PUT", DEP + r"\?", [(400, refusal)])]
    events, _ = await _run(local_project, rules)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert "See inner errors" not in failed.message
    assert failed.message.startswith("Could not start provisioning: Microsoft.App/containerApps: "
                                     "ContainerAppInvalidResourceTotal: The total requested CPU and memory")
    # the hint: the profiles' sizes, and the parameters to set
    assert "Consumption-GPU-NC8as-T4 offers 8 vCPU and 56 GiB" in failed.message
    assert "aitk params set containerCpu=8 containerMemory=56Gi" in failed.message
    assert failed.detail.startswith("Azure answered 400: InvalidTemplateDeployment > ValidationForResourceFailed > "
                                    "ContainerAppInvalidResourceTotal")


@pytest.mark.parametrize("old_arm", [False, True], ids=["nested-details", "json-string-in-Conflict"])
async def test_runtime_failure_names_the_resource_and_its_provider_error(local_project, old_arm):
    provider = arm_error("MaxRegionalQuotaExceeded", QUOTA)
    if old_arm:  # the inner statusMessage as a JSON string (Azure/reddog-containerapps#12)
        inner = json.dumps({"status": "Failed", "error": arm_error("ResourceDeploymentFailure", TERMINAL, [provider])})
        error = arm_error("DeploymentFailed", "At least one resource deployment operation failed.",
                          [arm_error("Conflict", inner)])
        op_status = inner
    else:
        wrapper = arm_error("ResourceDeploymentFailure", TERMINAL, [provider], target=APP_ID)
        error = arm_error("DeploymentFailed", "At least one resource deployment operation failed. Please list "
                          "deployment operations for details.", [wrapper])
        op_status = {"status": "Failed", "error": wrapper}
    ops = [_operation("Microsoft.Storage/storageAccounts", "aistoragex", "Succeeded"),
           _operation("Microsoft.App/containerApps", "aiacaappx", "Failed", op_status)]
    events, _ = await _run(local_project, _baseline() + _submitted("Failed", _deployment("Failed", error), ops))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert "terminal provisioning state" not in failed.message
    assert failed.message.startswith("Provisioning failed: Microsoft.App/containerApps 'aiacaappx': "
                                     f"MaxRegionalQuotaExceeded: {QUOTA}")
    assert "Request serverless GPU quota" in failed.message and "Quotas" in failed.message
    assert failed.detail.startswith("DeploymentFailed > ")
    row = [e for e in events if isinstance(e, ResourceProgress) and e.state == "Failed"]
    assert row and row[0].message == f"MaxRegionalQuotaExceeded: {QUOTA}".rstrip(".")  # the row: its cause alone
    assert InferenceConfig.load(local_project / "infra/inference.config.json").missing()


async def test_throttled_submit_is_retried_after_retry_after(local_project):
    ok = _deployment("Succeeded")
    ok["properties"]["outputs"] = {k: {"type": "String", "value": f"v-{k.lower()}"} for k in
                                   ("SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME",
                                    "FILE_SHARE_NAME", "ACA_APP_NAME", "ACA_APP_ENDPOINT")}
    rules = _baseline() + _submitted("Succeeded", ok, [_operation("Microsoft.App/containerApps", "aiacaappx",
                                                                  "Succeeded")])
    put = next(r for r in rules if r.method == "PUT")
    put.answers.insert(0, (429, {"error": arm_error("TooManyRequests", "Too many requests.")},
                           {"Retry-After": "0"}))
    events, transport = await _run(local_project, rules)
    assert isinstance(events[-1], Done), events[-1]
    assert transport.count("PUT", DEP) == 2  # once throttled, once accepted: nothing failed for the user
    assert not any(isinstance(e, Failed) for e in events)


async def test_cancelled_deployment_says_so_and_leaves_the_config(local_project):
    before = (local_project / "infra/inference.config.json").read_bytes()
    rules = _baseline() + _submitted("Canceled", _deployment("Canceled"),
                                     [_operation("Microsoft.App/containerApps", "aiacaappx", "Canceled")])
    events, _ = await _run(local_project, rules)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.message == "Provisioning canceled; inference.config.json was not changed."
    assert (local_project / "infra/inference.config.json").read_bytes() == before


async def test_workload_profile_whose_name_is_not_its_type_is_still_found(local_project):
    # The GPU profile's entry carries another name (as the example's D8 entry does): its id says the type.
    profiles = _profiles(_gpu_entry("Consumption-GPU-NC24-A100", name="Dedicated-D4"))
    refusal = (400, {"error": arm_error("InvalidTemplateDeployment", "stop here", [arm_error("X", "stop")])})
    rules = _baseline(profiles) + [Reply("GET", DEP + r"\?", [(404, {"error": {"code": "DeploymentNotFound",
                                                                                  "message": "no"}})]),
                                   Reply("PUT", DEP + r"\?", [refusal])]
    events, transport = await _run(local_project, rules)
    assert any(isinstance(e, Info) and e.message == "GPU profile Consumption-GPU-NC24-A100 is offered in westus3."
               for e in events)
    assert transport.count("GET", r"/usages\?") == 1  # read, and silent: the example names no GPU quota
    assert isinstance(events[-1], Failed) and transport.count("PUT", DEP) == 1


async def test_region_without_the_profile_fails_before_submitting(local_project):
    t4_only = _profiles(_gpu_entry("Consumption-GPU-NC8as-T4"))
    rules = _baseline(t4_only)
    events, transport = await _run(local_project, rules)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.message.startswith("The GPU profile Consumption-GPU-NC24-A100 is not offered in westus3 "
                                     "(Consumption-GPU-NC8as-T4 there);")
    assert "Quotas" in failed.detail
    assert transport.count("PUT", DEP) == 0
