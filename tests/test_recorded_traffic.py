"""The recorded-traffic check (tests/recorded_traffic.py) catches what Azure would not answer,
and its schema fixtures say where they come from. The journey itself is checked in
tests/test_journey.py; a failed activation in tests/backend/test_activation_failed_local.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.recorded_traffic import SCHEMAS, check

RG = "/subscriptions/s1/resourceGroups/rg"
APP = RG + "/providers/Microsoft.App/containerApps/app"


def _app(**props) -> dict:
    return {"id": APP, "name": "app", "type": "Microsoft.App/containerApps", "location": "eastus",
            "properties": {"provisioningState": "Succeeded", "latestRevisionName": "app--1",
                           "configuration": {"ingress": {"fqdn": "app.example.io", "targetPort": 7860}}, **props}}


def _report(tmp_path: Path, *exchanges: dict):
    path = tmp_path / "traffic.jsonl"
    path.write_text("".join(json.dumps({"request": None, "api_version": "x", **e}) + "\n" for e in exchanges))
    return check(path)


def test_a_body_azure_would_answer_passes(tmp_path):
    report = _report(tmp_path, {"method": "GET", "path": APP, "status": 200, "response": _app()},
                     {"method": "GET", "path": APP + "/revisions/app--1", "status": 200, "response": {
                         "name": "app--1", "properties": {"runningState": "ActivationFailed",
                                                          "runningStateDetails": "Deployment Progress Deadline "
                                                                                 "Exceeded. 0/2 replicas ready."}}})
    assert report.problems == [] and report.checked == 2


@pytest.mark.parametrize("bad, expected", [
    # a secret's value is write-only: GET must never return it
    (_app(configuration={"secrets": [{"name": "inference-api-key", "value": "s3cret"}]}),
     "properties/configuration/secrets/0: must not be answered (write-only in the spec)"),
    # a property the spec does not have (the local cloud must not invent shapes)
    (_app(replicaState="Running"), "'replicaState' was unexpected"),
    # a wrong type
    (_app(latestRevisionName=7), 'properties/latestRevisionName: fails type "string"'),
])
def test_a_body_azure_would_not_answer_is_caught(tmp_path, bad, expected):
    report = _report(tmp_path, {"method": "GET", "path": APP, "status": 200, "response": bad})
    assert any(expected in p for p in report.problems), report.problems
    assert "s3cret" not in " ".join(report.problems)  # values (keys, secrets) are never echoed


def test_error_bodies_requests_and_unknown_operations(tmp_path):
    report = _report(
        tmp_path,
        {"method": "GET", "path": RG, "status": 404,
         "response": {"error": {"code": "ResourceGroupNotFound", "message": "m", "details": "not a list"}}},
        {"method": "PUT", "path": RG, "status": 201, "request": {"tags": {}}, "response": None},
        {"method": "POST", "path": RG + "/providers/Microsoft.Storage/storageAccounts/a/listKeys", "status": 200,
         "response": {"keys": [{"keyName": "key1", "value": "k", "permissions": "FULL"},
                               {"keyName": "key2", "value": "k", "permissions": "Everything"}]}},
        {"method": "GET", "path": RG + "/providers/Microsoft.Made/up", "status": 200, "response": {}})
    text = "\n".join(report.problems)
    assert "(error body): error/details: fails type \"array\"" in text  # ARM's nested details are a list
    assert "(request): (body): 'location' is a required property" in text
    assert "keys/1/permissions" in text and "keys/0/permissions" not in text  # FULL: what Azure really says
    assert report.unknown == [f"GET {RG}/providers/Microsoft.Made/up -> 200"]


def test_every_fixture_names_its_source_api_version_and_commit():
    fixtures = sorted(SCHEMAS.glob("*.json"))
    assert len(fixtures) >= 8
    for path in fixtures:
        source = json.loads(path.read_text())["source"]
        assert source["repository"].startswith("Azure/") and len(source["commit"]) == 40, path.name
        assert source["path"] and source["api-version"], path.name


def test_the_preflight_and_ownership_reads_are_checked(tmp_path):
    """The pre-flight's provider registration and GPU quota reads, and the per-project listings
    (deployments, environments of the group), are operations with their schemas, not unknowns."""
    sub = "/subscriptions/s1"
    provider = {"id": sub + "/providers/Microsoft.App", "namespace": "Microsoft.App", "registrationState": "Registered",
                "registrationPolicy": "RegistrationRequired",
                "resourceTypes": [{"resourceType": "managedEnvironments", "locations": ["East US"],
                                   "apiVersions": ["2026-01-01"], "capabilities": "SupportsTags, SupportsLocation"}]}
    usage = {"unit": "Count", "currentValue": 0, "limit": 4,
             "name": {"value": "ManagedEnvironmentConsumptionT4Gpus", "localizedValue": "T4 GPUs"}}
    report = _report(
        tmp_path,
        {"method": "GET", "path": sub + "/providers/Microsoft.App", "status": 200, "response": provider},
        {"method": "POST", "path": sub + "/providers/Microsoft.App/register", "status": 200,
         "response": {**provider, "registrationState": "Registering"}},
        {"method": "GET", "path": sub + "/providers/Microsoft.App/locations/eastus/usages", "status": 200,
         "response": {"value": [usage, {**usage, "unit": "Gpus"}]}},
        {"method": "GET", "path": sub + "/providers/Microsoft.App/locations/westus/usages", "status": 200,
         "response": {"value": [{k: v for k, v in usage.items() if k != "limit"}]}},
        {"method": "GET", "path": RG + "/providers/Microsoft.Resources/deployments/", "status": 200,
         "response": {"value": [{"id": RG + "/providers/Microsoft.Resources/deployments/d", "name": "d",
                                 "properties": {"provisioningState": "Succeeded", "mode": "Incremental"}}]}},
        {"method": "GET", "path": RG + "/providers/Microsoft.App/managedEnvironments", "status": 200,
         "response": {"value": [{"id": RG + "/providers/Microsoft.App/managedEnvironments/env", "name": "env",
                                 "location": "eastus", "properties": {"provisioningState": "Succeeded"},
                                 "replicaCount": 1}]}})
    assert report.unknown == [] and report.unvalidated == set()
    assert {"Providers_Get", "Providers_Register", "Usages_List", "Deployments_ListByResourceGroup",
            "ManagedEnvironments_ListByResourceGroup"} <= report.operations
    assert sorted(p.split(" (response): ")[1] for p in report.problems) == [
        "value/0: 'limit' is a required property",
        "value/0: Additional properties are not allowed ('replicaCount' was unexpected)",
        'value/1/unit: fails enum ["Count"]',  # UsageUnit is a closed enum
    ]
