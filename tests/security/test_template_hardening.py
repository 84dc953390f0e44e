"""The storage account of the inference template is hardened (issue 12, item 11), the same
way in ``inference.bicep`` (what people read) and ``inference.json`` (what is deployed),
and a deployment through the local cloud's ARM keeps those settings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from tests.fixtures_local import deploy

REPO = Path(__file__).resolve().parents[2]
BICEP = (REPO / "infra/provision/inference.bicep").read_text()
TEMPLATE = json.loads((REPO / "infra/provision/inference.json").read_text())

EXPECTED = {
    "minimumTlsVersion": "TLS1_2",
    "supportsHttpsTrafficOnly": True,
    "allowBlobPublicAccess": False,
    "allowCrossTenantReplication": False,
    # The Container Apps Azure Files mount and `aitk deploy` authenticate with the key.
    "allowSharedKeyAccess": True,
    "publicNetworkAccess": "Enabled",
}


def _bicep_storage_properties() -> dict:
    block = re.search(r"resource storageAccount 'Microsoft\.Storage/storageAccounts@[^']+' = \{(.*?)\n\}", BICEP,
                      re.DOTALL).group(1)
    props = re.search(r"\n  properties: \{(.*?)\n  \}", block, re.DOTALL).group(1)
    out = {}
    for line in props.splitlines():
        m = re.match(r"\s*(\w+):\s*(.+?)\s*$", line)
        if m:
            value = m.group(2).replace("true", "True").replace("false", "False")
            out[m.group(1)] = ast.literal_eval(value)
    return out


def _arm_storage_properties() -> dict:
    account = next(r for r in TEMPLATE["resources"] if r["type"] == "Microsoft.Storage/storageAccounts")
    return account["properties"]


def test_storage_account_is_hardened_in_bicep_and_json_alike():
    bicep, arm = _bicep_storage_properties(), _arm_storage_properties()
    assert bicep == arm
    for key, value in EXPECTED.items():
        assert arm.get(key) == value, key
    assert arm["largeFileSharesState"] == "Enabled"  # AI Toolkit's fine-tuning share keeps working
    assert "requireInfrastructureEncryption" not in json.dumps(arm)  # create-only: an existing account would fail


def test_ingress_is_https_only():
    app = next(r for r in TEMPLATE["resources"] if r["type"] == "Microsoft.App/containerApps")
    assert app["properties"]["configuration"]["ingress"]["allowInsecure"] is False
    assert "allowInsecure: false" in BICEP


def test_a_local_deployment_keeps_the_hardened_settings(local_factory, local_project):
    from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

    outputs = deploy(local_factory, "rg-sec", local_project)
    account = local_factory.storage(LOCAL_SUBSCRIPTION_ID).storage_accounts.get_properties(
        "rg-sec", outputs["STORAGE_ACCOUNT_NAME"])
    assert account.minimum_tls_version == "TLS1_2"
    assert account.enable_https_traffic_only is True
    assert account.allow_blob_public_access is False
    assert account.allow_shared_key_access is True
