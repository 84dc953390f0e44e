"""inference.bicep (what people read) and inference.json (what aitk deploys) stay in step,
and the parameters file names only parameters the template has."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BICEP = (REPO / "infra/provision/inference.bicep").read_text()
TEMPLATE = json.loads((REPO / "infra/provision/inference.json").read_text())
PARAMS = json.loads((REPO / "infra/provision/inference.parameters.json").read_text())


def _bicep(kind: str) -> dict[str, str]:
    """``param NAME TYPE`` / ``output NAME TYPE`` lines -> {name: type}."""
    return dict(re.findall(rf"^{kind}\s+(\w+)\s+(\w+)", BICEP, re.MULTILINE))


def test_parameter_names_and_types_agree():
    bicep = _bicep("param")
    arm = {name: spec["type"].lower() for name, spec in TEMPLATE["parameters"].items()}
    assert list(bicep) == list(arm)
    secure = {"inferenceApiKey"}
    for name, btype in bicep.items():
        expected = "secure" + btype if name in secure else btype
        assert arm[name] == expected.lower(), name


def test_secure_parameter_is_secure_in_both():
    assert re.search(r"@secure\(\)\s*(?:@description\([^)]*\)\s*)?param inferenceApiKey string", BICEP)
    assert TEMPLATE["parameters"]["inferenceApiKey"]["type"] == "securestring"
    assert "defaultValue" not in TEMPLATE["parameters"]["inferenceApiKey"]


def test_resource_types_agree():
    bicep_types = re.findall(r"^resource\s+\w+\s+'([^'@]+)@([^']+)'", BICEP, re.MULTILINE)
    arm_types = [(r["type"], r["apiVersion"]) for r in TEMPLATE["resources"]]
    assert sorted(bicep_types) == sorted(arm_types)


def test_outputs_are_the_six_config_keys_in_both():
    keys = ["SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME",
            "ACA_APP_NAME", "ACA_APP_ENDPOINT"]
    assert list(_bicep("output")) == keys
    assert list(TEMPLATE["outputs"]) == keys


def test_parameters_file_names_exist_in_the_template():
    assert set(PARAMS["parameters"]) <= set(TEMPLATE["parameters"])
    # the required ones (no default) are given, except the key aitk supplies at deploy time
    required = {n for n, s in TEMPLATE["parameters"].items() if "defaultValue" not in s}
    assert required - set(PARAMS["parameters"]) == {"inferenceApiKey"}
    assert "inferenceApiKey" not in PARAMS["parameters"]


def test_ai_toolkit_default_name_prefixes_are_kept():
    defaults = {n: s.get("defaultValue", "") for n, s in TEMPLATE["parameters"].items()}
    for name, prefix in {"storageAccountName": "aistorage", "fileShareName": "aifileshare",
                         "acaEnvironmentName": "aienv", "acaEnvironmentStorageName": "aienvstorage",
                         "acaAppName": "aiacaapp", "acaLogAnalyticsName": "ailog"}.items():
        assert defaults[name] == f"[format('{prefix}{{0}}', parameters('resourceSuffix'))]", name
        assert f"'{prefix}${{resourceSuffix}}'" in BICEP
    assert "uniqueString(resourceGroup().id)" in defaults["resourceSuffix"]


def test_container_app_reads_the_key_from_a_secret_and_mounts_the_share():
    app = next(r for r in TEMPLATE["resources"] if r["type"] == "Microsoft.App/containerApps")
    container = app["properties"]["template"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["INFERENCE_API_KEY"] == {"name": "INFERENCE_API_KEY", "secretRef": "inference-api-key"}
    assert container["volumeMounts"][0]["mountPath"] == "/mount"
    assert app["properties"]["configuration"]["ingress"]["targetPort"] == 7860


def test_the_templates_probes_are_inside_what_azure_accepts():
    """failureThreshold 1-30 is Azure's own bound (it answers ContainerAppProbeFailureThresholdOutOfRange,
    microsoft/azure-container-apps#1100); periodSeconds 1-240 and initialDelaySeconds 0-60 are the spec's.
    The Startup probe still allows a slow first start (pip step, weights over SMB): 10 minutes."""
    template = json.loads((REPO / "infra/provision/inference.json").read_text())
    app = next(r for r in template["resources"] if r["type"] == "Microsoft.App/containerApps")
    probes = app["properties"]["template"]["containers"][0]["probes"]
    for p in probes:
        assert 1 <= p.get("failureThreshold", 3) <= 30, p
        assert 1 <= p.get("periodSeconds", 10) <= 240, p
        assert 0 <= p.get("initialDelaySeconds", 0) <= 60, p
    startup = next(p for p in probes if p["type"] == "Startup")
    assert startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup["failureThreshold"] >= 600
    bicep = (REPO / "infra/provision/inference.bicep").read_text()
    assert (f"initialDelaySeconds: {startup['initialDelaySeconds']}, periodSeconds: {startup['periodSeconds']}, "
            f"failureThreshold: {startup['failureThreshold']}") in bicep
