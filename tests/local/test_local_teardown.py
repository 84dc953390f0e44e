"""Deleting what a provision created, one resource at a time, through the real SDK clients:
the container app (its replica process ends, its endpoint stops answering), the environment
(with its storages; refused while an app runs in it, as in Azure), the Log Analytics
workspace and the storage account (with its share's folder)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy, pid_alive, upload_stand_in, wait_for

ENV_API = "2024-03-01"


def _share(factory, out):
    key = factory.storage(SUB).storage_accounts.list_keys(out["RESOURCE_GROUP_NAME"],
                                                          out["STORAGE_ACCOUNT_NAME"]).as_dict()
    return factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key["keys"][0]["value"])


def _ids(factory, group: str) -> set[str]:
    return {r.id.lower() for r in factory.resources(SUB).resources.list_by_resource_group(group)}


def test_delete_each_provisioned_resource(local_cloud, local_factory, local_project):
    out = deploy(local_factory, "rg1", local_project, modelPath="/mount")
    apps = local_factory.container_apps(SUB)
    app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
    env_id = app.as_dict()["properties"]["environmentId"]
    env_name = env_id.rsplit("/", 1)[1]
    upload_stand_in(_share(local_factory, out))
    apps.container_apps_revisions.restart_revision("rg1", app.name, app.latest_revision_name)
    serving = lambda: (st := local_cloud.replicas.status(app.id)).get("ready") and st["pid"]  # noqa: E731
    pid = wait_for(serving, what="the replica to serve")
    assert pid_alive(pid)

    # The environment cannot go while the app runs in it; nothing is deleted.
    before = _ids(local_factory, "rg1")
    with pytest.raises(HttpResponseError) as e:
        apps.managed_environments.begin_delete("rg1", env_name).result()
    assert e.value.status_code == 409 and "has container apps" in str(e.value)
    assert _ids(local_factory, "rg1") == before

    apps.container_apps.begin_delete("rg1", app.name).result()
    wait_for(lambda: not pid_alive(pid), what="the replica process to end")
    assert local_cloud.replicas.status(app.id)["state"] == "Stopped"
    with pytest.raises(HttpResponseError) as e:
        apps.container_apps.get("rg1", app.name)
    assert e.value.status_code == 404
    apps.container_apps.begin_delete("rg1", app.name).result()  # again: already gone, no error

    storages = f"{env_id}/storages".lower()
    assert any(i.startswith(storages) for i in _ids(local_factory, "rg1"))
    apps.managed_environments.begin_delete("rg1", env_name).result()
    assert not any(i.startswith(env_id.lower()) for i in _ids(local_factory, "rg1"))  # its storages too

    workspace = next(r for r in local_factory.resources(SUB).resources.list_by_resource_group("rg1")
                     if r.type == "Microsoft.OperationalInsights/workspaces")
    local_factory.resources(SUB).resources.begin_delete_by_id(workspace.id, api_version="2022-10-01").result()

    account_dir = local_cloud.files_root / out["STORAGE_ACCOUNT_NAME"]
    assert (account_dir / out["FILE_SHARE_NAME"] / "inference_server" / "__main__.py").is_file()
    local_factory.storage(SUB).storage_accounts.delete("rg1", out["STORAGE_ACCOUNT_NAME"])
    assert not account_dir.exists()
    assert _ids(local_factory, "rg1") == set()
    assert local_factory.resources(SUB).resource_groups.check_existence("rg1")  # the group stays


def test_group_delete_still_takes_an_environment_with_its_apps(local_cloud, local_factory, local_project):
    """Only a single DELETE of the environment is refused while apps use it."""
    out = deploy(local_factory, "rg2", local_project, modelPath="/mount")
    app_id = local_factory.container_apps(SUB).container_apps.get("rg2", out["ACA_APP_NAME"]).id
    local_factory.resources(SUB).resource_groups.begin_delete("rg2").result()
    assert not local_factory.resources(SUB).resource_groups.check_existence("rg2")
    assert local_cloud.replicas.status(app_id)["state"] == "Stopped"
