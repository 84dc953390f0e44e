"""Scale, keep-warm, cost estimate and teardown (``aitk scale``, ``aitk down``, the scale and
cost lines of ``aitk status``) against the local cloud through the real SDK clients."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.cloud import prices
from aitk_tui.cloud.operate import ScaleRequest, ScaleSettings, scale_patch, settings_of
from aitk_tui.cloud.sdkerrors import InputError
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB


def _aitk(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--project", str(root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _provision(capsys, root: Path, group: str = "rg-op") -> dict:
    assert _aitk(capsys, root, "groups", "create", group, "--location", "eastus", "--local")[0] == 0
    rc, out, err = _aitk(capsys, root, "provision", "--local", "--subscription", SUB, "--resource-group", group,
                         "--yes")
    assert rc == 0, err
    return json.loads((root / "infra/inference.config.json").read_text())


def _app_scale(factory, config: dict) -> dict:
    app = factory.container_apps(SUB).container_apps.get(config["RESOURCE_GROUP_NAME"], config["ACA_APP_NAME"])
    return app.as_dict()["properties"]["template"]["scale"]


# -- the price table and its arithmetic ------------------------------------------------------------
def test_estimate_arithmetic_per_hour_and_month_at_min_and_max():
    a100 = prices.PRICES["Consumption-GPU-NC24-A100"]
    est = prices.estimate("Consumption-GPU-NC24-A100", 1, 3, vcpus=24, memory=220)
    hourly = 3600 * (a100.gpu_per_second + 24 * prices.VCPU_PER_SECOND + 220 * prices.GIB_PER_SECOND)
    assert est.per_replica_hour == pytest.approx(hourly)
    assert est.min_per_hour == pytest.approx(hourly) and est.min_per_month == pytest.approx(hourly * 730)
    assert est.max_per_hour == pytest.approx(3 * hourly) and est.max_per_month == pytest.approx(3 * hourly * 730)
    assert est.label == "estimate" and est.source == prices.PRICE_SOURCE and est.price_date == prices.PRICE_DATE
    assert all("estimate" in line or "prices:" in line for line in est.lines())
    assert "taken " + prices.PRICE_DATE in est.lines()[-1]

    zero = prices.estimate("Consumption-GPU-NC8as-T4", 0, 2)
    assert zero.min_per_hour == 0 and zero.min_per_month == 0
    assert zero.vcpus == 8 and zero.memory_gib == 56  # the profile's size when the app's is unknown
    assert "no GPU billing while idle" in zero.lines()[1]
    assert zero.per_replica_hour < est.per_replica_hour  # a T4 costs less than an A100


def test_estimate_edges():
    assert prices.estimate("Consumption", 0, 1) is None  # not a priced GPU profile
    with pytest.raises(ValueError):
        prices.estimate("Consumption-GPU-NC8as-T4", 3, 2)
    for bad in (math.nan, math.inf, -1.0, 0.0, None):  # an unreadable size falls back to the profile's
        assert prices.estimate("Consumption-GPU-NC8as-T4", 0, 1, vcpus=bad, memory=bad).vcpus == 8
    huge = prices.estimate("Consumption-GPU-NC24-A100", 1000, 1000)
    assert math.isfinite(huge.max_per_month) and huge.max_per_month > 1_000_000
    assert prices.memory_gib("220Gi") == 220 and prices.memory_gib("512Mi") == 0.5
    assert prices.memory_gib("0.5Gi") == 0.5 and prices.memory_gib("lots") is None and prices.memory_gib(None) is None


def test_estimate_for_parameters_uses_template_defaults_for_nulls():
    template = json.loads((Path(__file__).resolve().parents[2] / "infra/provision/inference.json").read_text())
    est = prices.estimate_for_parameters({"maximumInstanceCount": 2, "gpuProfileType": None}, template)
    assert est.profile == "Consumption-GPU-NC24-A100" and (est.min_replicas, est.max_replicas) == (0, 2)
    assert (est.vcpus, est.memory_gib) == (24, 220)
    t4 = prices.estimate_for_parameters({"maximumInstanceCount": 1, "gpuProfileType": "Consumption-GPU-NC8as-T4",
                                         "containerCpu": 8, "containerMemory": "56Gi"}, template)
    assert t4.gpu == "NVIDIA T4" and t4.max_replicas == 1
    assert prices.estimate_for_parameters({"maximumInstanceCount": True}, template) is None


# -- validation of a scale request -----------------------------------------------------------------------
@pytest.mark.parametrize("values, word", [
    ({"min_replicas": -1}, "--min"), ({"max_replicas": 0}, "--max"), ({"concurrency": 0}, "--concurrency"),
    ({"min_replicas": 2**64}, "--min"), ({"concurrency": 2**64}, "--concurrency"), ({"max_replicas": 1001}, "--max"),
    ({"min_replicas": 3, "max_replicas": 2}, "above max"), ({"min_replicas": True}, "--min"),
    ({"concurrency": 5e-324}, "--concurrency"), ({"concurrency": math.nan}, "--concurrency"),
])
def test_scale_request_refuses_out_of_range(values, word):
    with pytest.raises(InputError) as e:
        ScaleRequest.checked(**values)
    assert word in e.value.message


def test_scale_request_against_the_current_settings():
    current = ScaleSettings(0, 2, 10, True)
    assert ScaleRequest.checked(min_replicas=1).apply(current) == ScaleSettings(1, 2, 10, True)
    assert ScaleRequest.checked(concurrency=4).apply(current) == ScaleSettings(0, 2, 4, False)
    with pytest.raises(InputError, match="above the app's max"):
        ScaleRequest.checked(min_replicas=5).apply(current)
    with pytest.raises(InputError, match="below the app's min"):
        ScaleRequest.checked(max_replicas=1).apply(ScaleSettings(2, 3, 10, True))


def test_scale_patch_keeps_other_rules_and_sets_the_http_one():
    app = {"properties": {"template": {"scale": {"minReplicas": 0, "maxReplicas": 2, "rules": [
        {"name": "queue", "azureQueue": {"queueName": "q", "queueLength": 5}}]}}}}
    body = scale_patch(app, ScaleSettings(1, 4, 6, False))
    scale = body["properties"]["template"]["scale"]
    assert body == {"properties": {"template": {"scale": scale}}}  # nothing else of the app is sent
    assert (scale["minReplicas"], scale["maxReplicas"]) == (1, 4)
    assert scale["rules"][0] == {"name": "queue", "azureQueue": {"queueName": "q", "queueLength": 5}}
    assert scale["rules"][1] == {"name": "http-scaling", "http": {"metadata": {"concurrentRequests": "6"}}}
    assert settings_of({"properties": {"template": {"scale": scale}}}) == ScaleSettings(1, 4, 6, False)
    # Without a concurrency of its own the app keeps ACA's default: no HTTP rule is added.
    assert scale_patch(app, ScaleSettings(0, 2, 10, True))["properties"]["template"]["scale"]["rules"] == \
        app["properties"]["template"]["scale"]["rules"]


# -- against the local cloud -----------------------------------------------------------------------------
def test_scale_keep_warm_sleep_and_status(cli_cloud, local_project, local_factory, capsys):
    root = Path(local_project)
    config = _provision(capsys, root)
    revisions_before = len(list(local_factory.container_apps(SUB).container_apps_revisions.list_revisions(
        config["RESOURCE_GROUP_NAME"], config["ACA_APP_NAME"])))

    rc, out, err = _aitk(capsys, root, "status", "--local", "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["provisioned"] is True
    assert st["scale"] == {"min_replicas": 0, "max_replicas": 2, "concurrency": 10, "concurrency_is_default": True,
                           "keeps_warm": False}
    assert st["workload_profile"] == "Consumption-GPU-NC24-A100"
    assert st["cost_estimate"]["label"] == "estimate" and st["cost_estimate"]["min_per_month"] == 0

    rc, out, err = _aitk(capsys, root, "scale", "--local", "--min", "1", "--max", "3", "--concurrency", "4")
    assert rc == 0, err
    assert "min 1, max 3, 4 concurrent requests per replica; a GPU replica stays on" in out
    assert "estimate at min 1" in err
    scale = _app_scale(local_factory, config)
    assert (scale["minReplicas"], scale["maxReplicas"]) == (1, 3)
    assert scale["rules"] == [{"name": "http-scaling", "http": {"metadata": {"concurrentRequests": "4"}}}]
    # An update of the app: a new revision (scale is revision-scope in ACA), the same app and key.
    revisions = list(local_factory.container_apps(SUB).container_apps_revisions.list_revisions(
        config["RESOURCE_GROUP_NAME"], config["ACA_APP_NAME"]))
    assert len(revisions) == revisions_before + 1
    secrets = local_factory.container_apps(SUB).container_apps.list_secrets(config["RESOURCE_GROUP_NAME"],
                                                                           config["ACA_APP_NAME"])
    assert [s.name for s in secrets.value] == ["inference-api-key"] and secrets.value[0].value

    rc, out, _ = _aitk(capsys, root, "status", "--local")
    assert rc == 0
    words = " ".join(out.split())  # lines are wrapped at 80 columns under their label
    assert "scale: min 1, max 3, 4 concurrent requests per replica; kept warm: a GPU bills while idle" in words
    assert "cost: estimate at min 1 (1 always on):" in words and "/month" in out

    rc, out, err = _aitk(capsys, root, "scale", "--local", "--sleep", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["changed"] is True and result["scale"]["min_replicas"] == 0 and result["scale"]["concurrency"] == 4
    assert result["before"]["min_replicas"] == 1 and result["cost_estimate"]["min_per_hour"] == 0
    assert _app_scale(local_factory, config)["minReplicas"] == 0

    rc, _, err = _aitk(capsys, root, "scale", "--local", "--keep-warm")
    assert rc == 0, err
    assert _app_scale(local_factory, config)["minReplicas"] == 1

    rc, out, err = _aitk(capsys, root, "scale", "--local", "--keep-warm")  # already so: nothing sent
    assert rc == 0 and "nothing was sent" in err

    rc, out, _ = _aitk(capsys, root, "scale", "--local")  # no option: show
    assert rc == 0 and out.startswith("scale:        min 1, max 3, 4 concurrent")

    rc, _, err = _aitk(capsys, root, "scale", "--local", "--min", "9")
    assert rc == 2 and "--min 9 is above the app's max replicas (3)" in err and err.count("\n") == 1
    assert _app_scale(local_factory, config)["minReplicas"] == 1  # nothing changed


def test_scale_usage_errors_come_before_any_cloud(local_project, capsys):
    root = Path(local_project)
    for argv, text in ((["--min", "-1"], "--min: Input should be greater than or equal to 0"),
                       (["--concurrency", "0"], "--concurrency: Input should be greater than or equal to 1"),
                       (["--min", str(2**64)], "--min: Input should be less than or equal to 1000"),
                       (["--min", "1", "--keep-warm"], "--min and --keep-warm contradict each other"),
                       (["--min", "4", "--max", "2"], "min (4) is above max (2)")):
        rc, out, err = _aitk(capsys, root, "scale", "--local", *argv)
        assert rc == 2 and out == "" and text in err, (argv, err)
    rc, _, err = _aitk(capsys, root, "scale", "--local", "--keep-warm", "--sleep")  # argparse: exclusive
    assert rc == 2


def test_provision_what_if_shows_a_cost_estimate(cli_cloud, local_project, capsys):
    root = Path(local_project)
    assert _aitk(capsys, root, "groups", "create", "rg-w", "--location", "westus3", "--local")[0] == 0
    rc, out, _ = _aitk(capsys, root, "provision", "--local", "--subscription", SUB, "--resource-group", "rg-w",
                       "--what-if")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if "Cost estimate" in ln)
    est = prices.estimate("Consumption-GPU-NC24-A100", 0, 2)
    assert f"{prices.money(0)}/month at min 0, up to {prices.money(est.max_per_month)}/month at max 2" in line
    assert prices.PRICE_DATE in line


def test_down_then_provision_and_deploy_uploads_nothing(cli_cloud, local_project, local_factory, capsys):
    root = Path(local_project)
    config = _provision(capsys, root, "rg-down")
    rc, out, err = _aitk(capsys, root, "deploy", "--local", "--no-wait")
    assert rc == 0, err
    uploaded = int(out.split()[1])
    assert uploaded > 0
    app_id = (f"/subscriptions/{SUB}/resourceGroups/rg-down/providers/Microsoft.App/containerApps/"
              f"{config['ACA_APP_NAME']}")

    rc, out, err = _aitk(capsys, root, "down", "--local", "--yes")
    assert rc == 0, err
    assert f"Microsoft.App/containerApps {config['ACA_APP_NAME']}" in err and "kept: the storage account" in err
    assert out.startswith(f"Deleted containerApps {config['ACA_APP_NAME']} in rg-down")
    assert cli_cloud.store.resource(app_id) is None
    names = {r.name for r in local_factory.resources(SUB).resources.list_by_resource_group("rg-down")}
    assert config["STORAGE_ACCOUNT_NAME"] in names and config["ACA_APP_NAME"] not in names
    assert json.loads((root / "infra/inference.config.json").read_text()) == config  # kept as it was

    rc, out, err = _aitk(capsys, root, "status", "--local", "--json")
    assert rc == 0 and json.loads(out) == {"name": config["ACA_APP_NAME"], "provisioned": False}
    rc, out, _ = _aitk(capsys, root, "status", "--local")
    assert rc == 0 and "provisioned:  no" in out
    rc, _, err = _aitk(capsys, root, "scale", "--local", "--keep-warm")
    assert rc == 2 and f"Container app {config['ACA_APP_NAME']} does not exist" in err

    rc, out, err = _aitk(capsys, root, "down", "--local", "--yes")  # again: nothing left to delete
    assert rc == 0 and "AlreadyGone" in err and "nothing (already gone)" in out

    rc, _, err = _aitk(capsys, root, "provision", "--local", "--subscription", SUB, "--resource-group", "rg-down",
                       "--yes")
    assert rc == 0, err
    rc, out, err = _aitk(capsys, root, "deploy", "--local", "--no-wait")
    assert rc == 0, err
    assert out.strip().startswith(f"uploaded 0 files (0 B), {uploaded} unchanged"), out  # the share was kept


def test_down_all_deletes_only_what_provisioning_created(cli_cloud, local_project, local_factory, capsys,
                                                         monkeypatch):
    root = Path(local_project)
    config = _provision(capsys, root, "rg-all")
    storage = local_factory.storage(SUB)
    storage.storage_accounts.begin_create("rg-all", "someoneelses", {
        "location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}).result()

    listing = local_factory.resources(SUB).resources.list_by_resource_group
    before = sorted(r.id for r in listing("rg-all"))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    rc, out, err = _aitk(capsys, root, "down", "--local", "--all")
    assert rc == 2 and "Refusing to delete without confirmation" in err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys, "stdin", _Lines("rg-other\n", isatty=True))
    rc, out, err = _aitk(capsys, root, "down", "--local", "--all")
    assert rc == 1 and "Nothing was deleted." in err and "Type rg-all to confirm" in err  # declined: not a success
    assert sorted(r.id for r in listing("rg-all")) == before

    monkeypatch.setattr(sys, "stdin", _Lines("rg-all\n", isatty=True))
    rc, out, err = _aitk(capsys, root, "down", "--local", "--all")
    assert rc == 0, err
    listed = err.split("To delete in rg-all:")[1]
    rows = listed.splitlines()[1:8]
    assert [ln.split()[0] for ln in rows[:4]] == [  # dependants first
        "Microsoft.App/containerApps", "Microsoft.App/managedEnvironments",
        "Microsoft.OperationalInsights/workspaces", "Microsoft.Storage/storageAccounts"]
    assert sorted(ln.split()[0] for ln in rows[4:7]) == [
        "Microsoft.App/managedEnvironments/storages", "Microsoft.Storage/storageAccounts/fileServices",
        "Microsoft.Storage/storageAccounts/fileServices/shares"]
    assert all(ln.endswith("(with its parent)") for ln in rows[4:7])
    left = sorted((r.type, r.name) for r in listing("rg-all"))
    assert left == [("Microsoft.Storage/storageAccounts", "someoneelses"),  # not the deployment's: kept
                    ("Microsoft.Storage/storageAccounts/fileServices", "someoneelses/default")]
    assert local_factory.resources(SUB).resource_groups.check_existence("rg-all")  # the group is kept
    assert not (cli_cloud.files_root / config["STORAGE_ACCOUNT_NAME"]).exists()
    assert (cli_cloud.files_root / "someoneelses").is_dir()
    rc, out, _ = _aitk(capsys, root, "status", "--local", "--json")
    assert rc == 0 and json.loads(out)["provisioned"] is False


def test_down_all_without_a_deployment_deletes_nothing(cli_cloud, local_project, local_factory, capsys):
    root = Path(local_project)
    config = _provision(capsys, root, "rg-nodep")
    deployments = local_factory.deployments(SUB).deployments
    for d in deployments.list_by_resource_group("rg-nodep"):
        deployments.begin_delete("rg-nodep", d.name).result()
    rc, _, err = _aitk(capsys, root, "down", "--local", "--all", "--yes")
    assert rc == 2 and "cannot tell which resources it created" in err
    names = {r.name for r in local_factory.resources(SUB).resources.list_by_resource_group("rg-nodep")}
    assert config["ACA_APP_NAME"] in names and config["STORAGE_ACCOUNT_NAME"] in names


def test_down_all_keeps_what_another_deployment_declares_too(cli_cloud, local_project, local_factory, capsys):
    """AI Toolkit's fine-tuning deployment declares the same storage account (with the model on
    its share) that the inference deployment re-declares: `down --all` must not delete it."""
    root = Path(local_project)
    config = _provision(capsys, root, "rg-ft")
    account = config["STORAGE_ACCOUNT_NAME"]
    finetune = {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0", "resources": [{
                    "type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": account,
                    "location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}]}
    local_factory.deployments(SUB).deployments.begin_create_or_update(
        "rg-ft", "finetuning", {"properties": {"mode": "Incremental", "template": finetune}}).result()
    share_dir = cli_cloud.files_root / account / config["FILE_SHARE_NAME"]
    assert share_dir.is_dir()

    rc, _, err = _aitk(capsys, root, "down", "--local", "--all", "--yes")
    assert rc == 0, err
    left = {(r.type, r.name) for r in local_factory.resources(SUB).resources.list_by_resource_group("rg-ft")}
    assert ("Microsoft.Storage/storageAccounts", account) in left and share_dir.is_dir()
    assert not any(t == "Microsoft.App/containerApps" for t, _ in left)
    assert "another deployment declares them too" in err and "finetuning" in err


class _Lines:
    """A stdin with given answers."""

    def __init__(self, text: str, isatty: bool) -> None:
        self._lines = text.splitlines(keepends=True)
        self._tty = isatty

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

    def isatty(self) -> bool:
        return self._tty


def test_scale_and_down_refuse_the_local_clouds_config_without_local(tmp_path, capsys):
    from aitk_tui.config.inference_config import KEYS

    root = tmp_path / "p"
    (root / "infra" / "provision").mkdir(parents=True)
    config = dict(zip(KEYS, (SUB, "rg", "acct", "share", "app", "127.0.0.1:49321")))
    (root / "infra" / "inference.config.json").write_text(json.dumps(config))
    for argv in (["scale", "--keep-warm"], ["down", "--yes"], ["down", "--all", "--yes"]):
        rc, out, err = _aitk(capsys, root, *argv)
        assert rc == 2 and out == "" and "is the local cloud's" in err and err.count("\n") == 1, (argv, err)


def test_interrupted_down_says_the_deletion_goes_on(tmp_path, capsys, monkeypatch):
    import aitk_tui.cli.operate as cli_operate

    def interrupted(project, args):
        args.operation_sent = True  # the deletion was sent (at the question, nothing was: no hint)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_operate, "run", interrupted)
    rc, out, err = _aitk(capsys, tmp_path, "down", "--yes")
    assert rc == 130 and out == ""
    assert err == ("aitk: interrupted (a deletion already sent continues in Azure; run `aitk down` again to see "
                   "what is left)\n")


def test_the_cost_estimate_uses_the_apps_own_cpu_and_memory(cli_cloud, local_project, capsys):
    """An app sized apart from its profile (12 vCPU, 100 GiB on an A100 profile of 24 and 220)
    is estimated at its own size, in the what-if and in status."""
    root = Path(local_project)
    path = root / "infra/provision/inference.parameters.json"
    doc = json.loads(path.read_text())
    doc["parameters"].update({"containerCpu": {"value": 12}, "containerMemory": {"value": "100Gi"}})
    path.write_text(json.dumps(doc, indent=2))
    template = json.loads((root / "infra/provision/inference.json").read_text())
    planned = prices.estimate_for_parameters({k: v["value"] for k, v in doc["parameters"].items()}, template)
    assert (planned.vcpus, planned.memory_gib) == (12, 100)

    _provision(capsys, root, "rg-size")
    rc, out, err = _aitk(capsys, root, "status", "--local", "--json")
    assert rc == 0, err
    cost = json.loads(out)["cost_estimate"]
    own = prices.estimate("Consumption-GPU-NC24-A100", 0, 2, vcpus=12, memory=100)
    profile = prices.estimate("Consumption-GPU-NC24-A100", 0, 2)
    assert own.max_per_month != profile.max_per_month
    assert cost["max_per_month"] == pytest.approx(own.max_per_month)


def test_a_declined_question_is_exit_1_for_provision_and_down_alike(cli_cloud, local_project, local_factory, capsys,
                                                                   monkeypatch):
    """Declining is not success, whichever command asked (before: a declined provision exited 0,
    a declined down 1); an input that ends before the answer is no answer, exit 1 too."""
    root = Path(local_project)
    config = _provision(capsys, root, "rg-ask")
    args = ("provision", "--local", "--subscription", SUB, "--resource-group", "rg-ask")
    for answer, said in (("n\n", "Nothing was changed."), ("", "aitk: error: No answer: the input ended")):
        monkeypatch.setattr(sys, "stdin", _Lines(answer, isatty=True))
        rc, _, err = _aitk(capsys, root, *args)
        assert rc == 1 and said in err, (answer, err)
        monkeypatch.setattr(sys, "stdin", _Lines(answer, isatty=True))
        rc, _, err = _aitk(capsys, root, "down", "--local")
        assert rc == 1 and ("Nothing was deleted." if answer else said) in err, (answer, err)
        assert "interrupted" not in err and "Traceback" not in err
    assert _app_scale(local_factory, config)  # the app is still there
