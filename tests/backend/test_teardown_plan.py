"""``aitk down``'s plan, whole, from the back-end (no CLI, no terminal): what it deletes, in
which order, what goes with its parent and what it says it keeps. Through the real SDK
clients on the local cloud; the resource names are chosen so that alphabetical order is not
the dependency order (an app named like "zz", a storage account like "aaa")."""

from __future__ import annotations

from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy

NAMES = {"storageAccountName": "aaastorage1", "fileShareName": "share1", "acaEnvironmentName": "mmenv",
         "acaEnvironmentStorageName": "envstore", "acaAppName": "zzapp", "acaLogAnalyticsName": "bblog1"}
KEPT_BY_DEFAULT = ("kept: the storage account and share (model, adapter, server files), the environment and the "
                   "log workspace")


def _config(out: dict, group: str) -> InferenceConfig:
    return InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=group, **{k: out[k] for k in (
        "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME", "ACA_APP_NAME", "ACA_APP_ENDPOINT")})


def _rows(targets) -> list[tuple[str, str]]:
    return [(t.type, t.name) for t in targets]


async def test_down_all_plans_dependants_first_and_children_with_their_parent(session, local_factory,
                                                                              local_project):
    config = _config(deploy(local_factory, "rg-plan", local_project, **NAMES), "rg-plan")
    plan = await session.teardown_plan(config, everything=True)
    assert plan.resource_group == "rg-plan"
    assert _rows(plan.delete) == [("Microsoft.App/containerApps", "zzapp"),  # the app before its environment
                                  ("Microsoft.App/managedEnvironments", "mmenv"),
                                  ("Microsoft.OperationalInsights/workspaces", "bblog1"),
                                  ("Microsoft.Storage/storageAccounts", "aaastorage1")]
    assert sorted(_rows(plan.with_parent)) == [
        ("Microsoft.App/managedEnvironments/storages", "mmenv/envstore"),
        ("Microsoft.Storage/storageAccounts/fileServices", "aaastorage1/default"),
        ("Microsoft.Storage/storageAccounts/fileServices/shares", "aaastorage1/default/share1")]
    assert plan.keep_note == "kept: the resource group rg-plan and anything in it this deployment did not create"
    prefix = f"/subscriptions/{SUB}/resourceGroups/rg-plan/providers/"
    assert all(t.id.startswith(prefix) for t in (*plan.delete, *plan.with_parent))

    app_only = await session.teardown_plan(config)  # without --all: the app alone
    assert _rows(app_only.delete) == [("Microsoft.App/containerApps", "zzapp")] and app_only.with_parent == ()
    assert app_only.keep_note == KEPT_BY_DEFAULT


async def test_down_all_plan_keeps_and_names_what_another_deployment_declares(session, local_factory,
                                                                             local_project):
    """AI Toolkit's fine-tuning deployment declares the same storage account: the plan keeps
    it with its share and says why, by the other deployment's name."""
    config = _config(deploy(local_factory, "rg-plan2", local_project, **NAMES), "rg-plan2")
    finetune = {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0", "resources": [{
                    "type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "aaastorage1",
                    "location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}]}
    local_factory.deployments(SUB).deployments.begin_create_or_update(
        "rg-plan2", "finetuning", {"properties": {"mode": "Incremental", "template": finetune}}).result()

    plan = await session.teardown_plan(config, everything=True)
    assert _rows(plan.delete) == [("Microsoft.App/containerApps", "zzapp"),
                                  ("Microsoft.App/managedEnvironments", "mmenv"),
                                  ("Microsoft.OperationalInsights/workspaces", "bblog1")]
    assert _rows(plan.with_parent) == [("Microsoft.App/managedEnvironments/storages", "mmenv/envstore")]
    assert plan.keep_note == ("kept: the resource group rg-plan2 and anything in it this deployment did not create; "
                              "also kept, because another deployment declares them too: storageAccounts aaastorage1 "
                              "(finetuning)")


async def test_down_all_plan_leaves_out_what_lies_in_another_group(session, local_cloud, local_factory, local_project):
    """A deployment's outputResources can name a resource of another group (one whose name
    even starts like this group's): the plan never lists it, and the rest still goes."""
    config = _config(deploy(local_factory, "rg-plan3", local_project, **NAMES), "rg-plan3")
    resources = local_factory.resources(SUB)
    resources.resource_groups.create_or_update("rg-plan3x", {"location": "eastus"})
    other = f"/subscriptions/{SUB}/resourceGroups/rg-plan3x/providers/Microsoft.OperationalInsights/workspaces/otherlog"
    resources.resources.begin_create_or_update_by_id(
        other, {"location": "eastus", "properties": {"sku": {"name": "PerGB2018"}}}, api_version="2022-10-01").result()
    record = local_cloud.store.deployment(SUB, "rg-plan3", "aitk-inference")
    local_cloud.store.update_deployment(SUB, "rg-plan3", "aitk-inference",
                                        output_resources=[*record["output_resources"], {"id": other}])

    plan = await session.teardown_plan(config, everything=True)
    assert "otherlog" not in str(plan)
    assert _rows(plan.delete) == [("Microsoft.App/containerApps", "zzapp"),
                                  ("Microsoft.App/managedEnvironments", "mmenv"),
                                  ("Microsoft.OperationalInsights/workspaces", "bblog1"),
                                  ("Microsoft.Storage/storageAccounts", "aaastorage1")]
