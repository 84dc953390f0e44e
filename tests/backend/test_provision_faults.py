"""Provisioning on the local cloud under faults: throttling, 5xx bursts, dropped connections,
token expiry (CAE challenge), a failing resource, a crash mid-deployment (re-attach), and
cancellation. Nothing is lost: the config is written only after success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aitk_tui.cloud import preflight as preflight_mod
from aitk_tui.cloud import provision as prov
from aitk_tui.cloud.session import CloudSession
from aitk_tui.config.inference_config import KEYS, InferenceConfig
from aitk_tui.config.parameters import ParametersDocument
from aitk_tui.config.state import ProjectState
from aitk_tui.events import Done, Failed, Info, ResourceProgress
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB
from aitk_tui.project import Project

pytestmark = pytest.mark.timeout(60)

HAND_FILLED = json.dumps({k: f"previous-{k.lower()}" for k in KEYS}, indent=2) + "\n"


async def _provision(session: CloudSession, group: str = "rg-demo") -> list:
    # A known project id, so that the deployment's name (aitk-inference-<id>) can be faulted by path.
    ProjectState.update(session.project.state_path, project_id="demo")
    await session.create_resource_group(SUB, group, "eastus")
    params = ParametersDocument.load(session.project.parameters_path)
    return [e async for e in session.provision(SUB, group, params)]


def _ok(events: list) -> Done:
    assert isinstance(events[-1], Done), events[-1]
    assert not any(isinstance(e, Failed) for e in events)
    return events[-1]


async def test_provision_writes_config_and_reports_each_resource(session, local_project):
    events = await _provision(session)
    done = _ok(events)
    config = InferenceConfig.load(session.project.config_path)
    assert done.result.config == config and not config.missing()
    rows = [e for e in events if isinstance(e, ResourceProgress)]
    types = {e.resource_type for e in rows}
    assert "Microsoft.App/containerApps" in types and len(types) == 7
    assert [e.state for e in rows if e.resource_type == "Microsoft.App/containerApps"][-1] == "Succeeded"
    assert [e.elapsed_s for e in rows] == sorted(e.elapsed_s for e in rows)
    # the API key is kept on re-provision, so clients keep working
    key = await session.api_key(config)
    again = await _provision(session)
    _ok(again)
    assert any(isinstance(e, Info) and "existing API key" in e.message for e in again)
    assert await session.api_key(config) == key


@pytest.mark.parametrize("kind,opts", [
    ("throttle", {"count": 2, "retry_after": 0}),
    ("server_error", {"count": 3, "status": 503}),
    ("drop_connection", {"count": 2}),
    ("token_expired", {"count": 2}),
])
async def test_provision_survives_transient_faults_mid_poll(session, local_cloud, kind, opts, issued_tokens):
    local_cloud.inject(kind, path_contains="operationStatuses", **opts)
    local_cloud.inject(kind, path_contains="/deployments/aitk-inference-demo/operations", **opts)
    events = await _provision(session)
    _ok(events)
    assert local_cloud.faults.list() == []  # every injected fault was hit, and survived
    assert not InferenceConfig.load(session.project.config_path).missing()


async def test_provision_survives_faults_on_the_submit(session, local_cloud):
    local_cloud.inject("throttle", count=1, path_contains="deployments/aitk-inference-demo", retry_after=0)
    local_cloud.inject("server_error", count=2, path_contains="deployments/aitk-inference-demo", status=502)
    local_cloud.inject("token_expired", count=1, path_contains="resourcegroups")
    _ok(await _provision(session))
    assert local_cloud.faults.list() == []


async def test_failed_resource_is_named_and_config_is_untouched(session, local_cloud):
    path = session.project.config_path
    path.write_text(HAND_FILLED)
    local_cloud.inject("fail_resource", resource="Microsoft.App/containerApps", code="MaxRegionalQuotaExceeded",
                       message="Cannot have more than 1 SubscriptionNCA100Gpus in region eastus.")
    events = await _provision(session)
    failed = events[-1]
    assert isinstance(failed, Failed), failed
    assert failed.message.startswith("Provisioning failed: Microsoft.App/containerApps 'aiacaapp")
    assert "MaxRegionalQuotaExceeded: Cannot have more than 1 SubscriptionNCA100Gpus" in failed.message
    bad = [e for e in events if isinstance(e, ResourceProgress) and e.state == "Failed"]
    assert bad and "SubscriptionNCA100Gpus" in bad[0].message
    assert path.read_text() == HAND_FILLED  # byte for byte
    assert sorted(p.name for p in path.parent.iterdir() if p.is_file()) == ["inference.config.json"]


async def test_cancel_then_reattach_to_the_running_deployment(make_local_cloud, local_project, tmp_path):
    cloud = make_local_cloud(tmp_path / "slow-cloud", op_delay_s=0.1)
    project = Project(Path(local_project))
    before = project.config_path.read_bytes()

    first = CloudSession.for_cloud(project, cloud.endpoints, cloud.credential())
    await first.create_resource_group(SUB, "rg-demo", "eastus")
    params = ParametersDocument.load(project.parameters_path)
    gen = first.provision(SUB, "rg-demo", params)
    async for event in gen:
        if isinstance(event, ResourceProgress):
            break  # the user pressed Ctrl-C (or aitk crashed) while the deployment runs
    await gen.aclose()
    assert project.config_path.read_bytes() == before  # nothing half-written
    assert [p.name for p in project.config_path.parent.iterdir() if p.name.endswith(".tmp")] == []
    client = first.factory.deployments(SUB)
    name = "aitk-inference-" + ProjectState.load(project.state_path).project_id
    submitted = client.deployments.get("rg-demo", name)
    assert submitted.properties.provisioning_state in ("Accepted", "Running")

    second = CloudSession.for_cloud(project, cloud.endpoints, cloud.credential())  # a new aitk process
    events = [e async for e in second.provision(SUB, "rg-demo", ParametersDocument.load(project.parameters_path))]
    _ok(events)
    assert any(isinstance(e, Info) and "following it instead of starting another" in e.message for e in events)
    after = client.deployments.get("rg-demo", name)
    assert after.properties.correlation_id == submitted.properties.correlation_id  # not submitted twice
    assert not InferenceConfig.load(project.config_path).missing()


async def test_gpu_profile_missing_in_region_fails_before_deploying(session, monkeypatch):
    monkeypatch.setattr(preflight_mod, "_gpu_profiles", lambda _s, _sub, location: ["Consumption-GPU-NC24-A100"]
                        if location == "westus3" else ["Consumption-GPU-NC8as-T4"])
    events = await _provision(session)
    assert isinstance(events[-1], Failed)
    # the regions that offer it, as the API answers them now, and how to ask for quota
    assert events[-1].message == ("The GPU profile Consumption-GPU-NC24-A100 is not offered in eastus "
                                  "(Consumption-GPU-NC8as-T4 there); Azure offers it in westus3.")
    assert "aitk params set location=westus3" in events[-1].detail and "Quotas" in events[-1].detail
    assert not any(isinstance(e, ResourceProgress) for e in events)
    client = session.factory.deployments(SUB)
    assert list(client.deployments.list_by_resource_group("rg-demo")) == []


async def test_gpu_check_unanswered_is_a_warning_only(session, monkeypatch):
    monkeypatch.setattr(preflight_mod, "_gpu_profiles", lambda *a: None)
    events = await _provision(session)
    _ok(events)
    assert any(isinstance(e, Info) and e.level == "warning" and "GPU" in e.message for e in events)


async def test_invalid_parameters_and_missing_group_fail_before_any_deployment(session):
    params = ParametersDocument.load(session.project.parameters_path)
    params._raw["parameters"]["storageAccountName"] = {"value": "Not_Valid"}
    await session.create_resource_group(SUB, "rg-demo", "eastus")
    events = [e async for e in session.provision(SUB, "rg-demo", params)]
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "storageAccountName" in events[0].message
    ok_params = ParametersDocument.load(session.project.parameters_path)
    events = [e async for e in session.provision(SUB, "rg-nope", ok_params)]
    assert events[-1].message == f"Resource group rg-nope does not exist in subscription {SUB}."


async def test_what_if_lists_creates_then_no_changes(session):
    await session.create_resource_group(SUB, "rg-demo", "eastus")
    params = ParametersDocument.load(session.project.parameters_path)
    done = [e async for e in session.what_if(SUB, "rg-demo", params)][-1]
    assert isinstance(done, Done) and {c.change_type for c in done.result.changes} == {"Create"}
    _ok(await _provision(session))
    done = [e async for e in session.what_if(SUB, "rg-demo", params)][-1]
    assert "Create" not in {c.change_type for c in done.result.changes}


async def test_what_if_is_estimated_where_the_cloud_has_no_what_if_api(session, monkeypatch):
    from azure.core.exceptions import HttpResponseError

    def unsupported(*a, **k):
        err = HttpResponseError(message="Not implemented")
        err.status_code = 501
        raise err

    _ok(await _provision(session))
    monkeypatch.setattr(prov, "_what_if_api", unsupported)
    params = ParametersDocument.load(session.project.parameters_path)
    events = [e async for e in session.what_if(SUB, "rg-demo", params)]
    done = events[-1]
    assert isinstance(done, Done) and done.result.estimated and done.summary.startswith("What-if (estimated)")
    app = next(c for c in done.result.changes if c.resource_type == "Microsoft.App/containerApps")
    assert app.change_type == "Modify" and app.name.startswith("aiacaapp")
