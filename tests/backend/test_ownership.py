"""Nothing ``aitk down`` does touches what is not this project's: two projects in one resource
group, the shared record of projects provisioned before deployments were named per project,
names from inference.config.json that would address another resource, and an app the config
names that another project created. Through the CLI and the real SDK clients on the local cloud."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.config.state import ProjectState
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy

B_NAMES = {"storageAccountName": "bstorage1", "fileShareName": "bshare", "acaEnvironmentName": "benv",
           "acaEnvironmentStorageName": "benvstorage", "acaAppName": "bapp", "acaLogAnalyticsName": "blog1"}


def _aitk(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--project", str(root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _provision(capsys, root: Path, group: str) -> dict:
    rc, _, err = _aitk(capsys, root, "provision", "--local", "--subscription", SUB, "--resource-group", group, "--yes")
    assert rc == 0, err
    return json.loads((root / "infra/inference.config.json").read_text())


def _project_b(local_project: Path) -> Path:
    root = local_project.parent / "project-b"
    shutil.copytree(local_project, root)
    doc_path = root / "infra/provision/inference.parameters.json"
    doc = json.loads(doc_path.read_text())
    doc["parameters"].update({k: {"value": v} for k, v in B_NAMES.items()})
    doc_path.write_text(json.dumps(doc, indent=2))
    return root


def _names(factory, group: str) -> set[tuple[str, str]]:
    return {(r.type, r.name) for r in factory.resources(SUB).resources.list_by_resource_group(group)}


@pytest.fixture
def two_projects(cli_cloud, local_project, local_factory, capsys):
    """A provisions into rg-shared, then B (other resource names) into the same group."""
    a = Path(local_project)
    b = _project_b(a)
    assert _aitk(capsys, a, "groups", "create", "rg-shared", "--location", "eastus", "--local")[0] == 0
    config_a = _provision(capsys, a, "rg-shared")
    config_b = _provision(capsys, b, "rg-shared")
    assert config_b["ACA_APP_NAME"] == "bapp" and config_a["ACA_APP_NAME"] != "bapp"
    return a, b, config_a, config_b


def test_each_project_names_its_own_deployment_and_tags_what_it_creates(two_projects, local_factory):
    a, b, config_a, _ = two_projects
    id_a = ProjectState.load(a / ".aitk/state.json").project_id
    id_b = ProjectState.load(b / ".aitk/state.json").project_id
    assert id_a and id_b and id_a != id_b and id_a.startswith("project-")
    deployments = {d.name: d for d in local_factory.deployments(SUB).deployments.list_by_resource_group("rg-shared")}
    assert set(deployments) == {f"aitk-inference-{id_a}", f"aitk-inference-{id_b}"}
    assert deployments[f"aitk-inference-{id_a}"].tags == {"aitk-project": id_a}
    app = local_factory.container_apps(SUB).container_apps.get("rg-shared", config_a["ACA_APP_NAME"])
    assert app.tags == {"aitk-project": id_a}
    account = local_factory.storage(SUB).storage_accounts.get_properties("rg-shared", "bstorage1")
    assert account.tags == {"aitk-project": id_b}


def test_down_all_in_one_project_leaves_the_other_running(two_projects, cli_cloud, local_factory, capsys):
    a, b, config_a, config_b = two_projects
    b_resources = {(t, n) for t, n in _names(local_factory, "rg-shared")
                   if n.split("/")[0] in set(B_NAMES.values())}
    assert len(b_resources) == 7

    rc, out, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 0, err
    assert _names(local_factory, "rg-shared") == b_resources  # A's are gone, every one of B's is kept
    assert not any(n in err + out for n in B_NAMES.values())  # never listed, never said to be deleted
    assert f"containerApps {config_a['ACA_APP_NAME']}" in out and "GPU billing of the app stopped" in err
    app_b = local_factory.container_apps(SUB).container_apps.get("rg-shared", "bapp")
    assert app_b.properties.provisioning_state == "Succeeded"
    assert (cli_cloud.files_root / "bstorage1" / "bshare").is_dir()

    rc, out, err = _aitk(capsys, b, "status", "--local", "--json")
    assert rc == 0 and json.loads(out)["provisioned"] is True


def test_down_all_refuses_the_shared_record_when_another_project_wrote_it_last(
        cli_cloud, local_project, local_factory, capsys):
    """Projects provisioned before deployments were named per project share ``aitk-inference``:
    the last one to provision owns it. A's teardown then refuses and deletes nothing."""
    a = Path(local_project)
    out_a = deploy(local_factory, "rg-old", a, name="aitk-inference")
    (a / "infra/inference.config.json").write_text(json.dumps(out_a))
    deploy(local_factory, "rg-old", a, name="aitk-inference", **B_NAMES)  # B, later, same record
    before = _names(local_factory, "rg-old")

    rc, out, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 2 and out == ""
    assert "another project provisioned into this group after this one" in err and "nothing was deleted" in err
    assert _names(local_factory, "rg-old") == before


def test_down_all_still_reads_the_shared_record_of_an_earlier_provision(
        cli_cloud, local_project, local_factory, capsys):
    a = Path(local_project)
    out_a = deploy(local_factory, "rg-old", a, name="aitk-inference")
    (a / "infra/inference.config.json").write_text(json.dumps(out_a))
    assert len(_names(local_factory, "rg-old")) == 7

    rc, out, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 0, err
    assert _names(local_factory, "rg-old") == set()


def test_down_refuses_a_config_name_that_would_address_another_resource(two_projects, local_factory, capsys):
    """``x/../../../Microsoft.Storage/storageAccounts/<name>`` must not reach a resource id: the
    HTTP client removes the dot segments and the DELETE lands on the storage account."""
    a, _, config_a, _ = two_projects
    path = a / "infra/inference.config.json"
    before = _names(local_factory, "rg-shared")
    for bad in (f"x/../../../Microsoft.Storage/storageAccounts/{config_a['STORAGE_ACCOUNT_NAME']}", "..",
                "bstorage1/.."):
        path.write_text(json.dumps({**config_a, "ACA_APP_NAME": bad}))
        for argv in (["down", "--local", "--yes"], ["down", "--local", "--all", "--yes"]):
            rc, out, err = _aitk(capsys, a, *argv)
            assert rc == 2 and out == "", (bad, argv, err)
            assert "names a resource Azure would not accept" in err and "ACA_APP_NAME" in err
    path.write_text(json.dumps({**config_a, "RESOURCE_GROUP_NAME": "rg-shared/.."}))
    rc, _, err = _aitk(capsys, a, "down", "--local", "--yes")
    assert rc == 2 and "RESOURCE_GROUP_NAME" in err
    assert _names(local_factory, "rg-shared") == before


def test_down_refuses_an_app_of_another_project_named_in_the_config(two_projects, local_factory, capsys):
    a, _, config_a, _ = two_projects
    (a / "infra/inference.config.json").write_text(json.dumps({**config_a, "ACA_APP_NAME": "bapp"}))
    rc, out, err = _aitk(capsys, a, "down", "--local", "--yes")
    assert rc == 2 and "belongs to another aitk project" in err and "nothing was deleted" in err
    assert ("Microsoft.App/containerApps", "bapp") in _names(local_factory, "rg-shared")

    # an app nothing in the group declares (created by hand) is not taken either
    apps = local_factory.container_apps(SUB).container_apps
    env_id = apps.get("rg-shared", config_a["ACA_APP_NAME"]).as_dict()["properties"]["environmentId"]
    apps.begin_create_or_update("rg-shared", "handmade", {
        "location": "eastus", "properties": {"environmentId": env_id, "configuration": {},
                                             "template": {"containers": [{"name": "c", "image": "x"}]}}}).result()
    (a / "infra/inference.config.json").write_text(json.dumps({**config_a, "ACA_APP_NAME": "handmade"}))
    rc, _, err = _aitk(capsys, a, "down", "--local", "--yes")
    assert rc == 2 and "No deployment in rg-shared says container app handmade is this project's" in err
    assert ("Microsoft.App/containerApps", "handmade") in _names(local_factory, "rg-shared")


def test_down_all_refuses_when_the_deployment_and_the_config_disagree(two_projects, local_factory, capsys):
    a, _, config_a, _ = two_projects
    (a / "infra/inference.config.json").write_text(json.dumps({**config_a, "STORAGE_ACCOUNT_NAME": "bstorage1"}))
    before = _names(local_factory, "rg-shared")
    rc, out, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 2 and "name different resources" in err and "STORAGE_ACCOUNT_NAME" in err
    assert _names(local_factory, "rg-shared") == before


def test_down_all_never_deletes_a_resource_in_another_group(cli_cloud, local_project, local_factory, capsys):
    """A deployment's outputResources can name a resource outside its group (a template may
    reach another group): it is not this project's to delete, and the rest still goes."""
    a = Path(local_project)
    assert _aitk(capsys, a, "groups", "create", "rg-a", "--location", "eastus", "--local")[0] == 0
    _provision(capsys, a, "rg-a")
    resources = local_factory.resources(SUB)
    resources.resource_groups.create_or_update("rg-b", {"location": "eastus"})
    other = (f"/subscriptions/{SUB}/resourceGroups/rg-b/providers/Microsoft.OperationalInsights/workspaces/"
             "other-log")
    resources.resources.begin_create_or_update_by_id(
        other, {"location": "eastus", "properties": {"sku": {"name": "PerGB2018"}}}, api_version="2022-10-01").result()
    name = "aitk-inference-" + ProjectState.load(a / ".aitk/state.json").project_id
    record = cli_cloud.store.deployment(SUB, "rg-a", name)
    cli_cloud.store.update_deployment(SUB, "rg-a", name,
                                      output_resources=[*record["output_resources"], {"id": other}])

    rc, out, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 0, err
    assert "other-log" not in err + out
    assert _names(local_factory, "rg-a") == set()
    assert _names(local_factory, "rg-b") == {("Microsoft.OperationalInsights/workspaces", "other-log")}


def test_a_clone_without_the_project_state_still_finds_its_own_resources(two_projects, local_factory, capsys):
    """.aitk/ is not in version control: a fresh clone adopts the id of the one deployment whose
    outputs name what its inference.config.json names, and tears down only that."""
    a, _, config_a, _ = two_projects
    (a / ".aitk/state.json").unlink()
    rc, _, err = _aitk(capsys, a, "down", "--local", "--yes")
    assert rc == 0, err
    assert ("Microsoft.App/containerApps", config_a["ACA_APP_NAME"]) not in _names(local_factory, "rg-shared")
    rc, _, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 0, err
    assert {n.split("/")[0] for _, n in _names(local_factory, "rg-shared")} <= set(B_NAMES.values())
    assert ("Microsoft.App/containerApps", "bapp") in _names(local_factory, "rg-shared")


def test_provision_refuses_a_group_name_with_a_dot_segment_before_any_request(cli_cloud, local_project, capsys):
    for group in ("..", "rg/..", "a/b"):
        rc = main(["--project", str(local_project), "provision", "--local", "--subscription", SUB,
                   "--resource-group", group, "--yes"])
        out, err = capsys.readouterr()
        assert rc == 2 and "Resource group name" in err, (group, err)
    assert cli_cloud.store.get("deployments", {}) == {}


def test_down_all_says_so_when_the_projects_deployment_has_no_outputs(two_projects, cli_cloud, local_factory, capsys):
    """A re-provision that failed leaves a record without outputs: nothing to check the config
    against, so nothing is deleted, and the message says why (not that the names differ)."""
    a, _, _, _ = two_projects
    name = "aitk-inference-" + ProjectState.load(a / ".aitk/state.json").project_id
    cli_cloud.store.update_deployment(SUB, "rg-shared", name, state="Failed", outputs=None)
    before = _names(local_factory, "rg-shared")
    rc, out, err = _aitk(capsys, a, "down", "--local", "--all", "--yes")
    assert rc == 2 and "has no outputs (its state is Failed)" in err and "nothing was deleted" in err
    assert _names(local_factory, "rg-shared") == before
