"""Issue 5 acceptance: the whole headless journey on one machine with `--local`.

init → subscriptions → groups create → provision → deploy → chat (tokens arrive) →
change one file → deploy uploads exactly that file → local stop leaves no process behind.
"""

import json
import re
import time

import pytest

from tests.journey import Journey, processes_mentioning

pytestmark = pytest.mark.timeout(420)


def test_local_journey_from_init_to_chat_and_clean_stop(tmp_path, monkeypatch):
    project = tmp_path / "my-finetune"
    project.mkdir()
    traffic = tmp_path / "arm-traffic.jsonl"
    monkeypatch.setenv("AITK_LOCAL_RECORD", str(traffic))  # the local cloud records every ARM exchange
    j = Journey(project)
    try:
        j.init()
        assert (project / "infra/provision/inference.parameters.json").is_file()
        assert (project / "inference_server/__main__.py").is_file()

        sub = j.subscription_id()
        j.create_group("rg-demo")
        j.provision(sub, "rg-demo")

        config = json.loads((project / "infra/inference.config.json").read_text())
        assert list(config) == ["SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME",
                                "FILE_SHARE_NAME", "ACA_APP_NAME", "ACA_APP_ENDPOINT"]
        assert all(config.values()), config
        assert config["SUBSCRIPTION_ID"] == sub and config["RESOURCE_GROUP_NAME"] == "rg-demo"

        first = j.deploy()
        m = re.search(r"uploaded (\d+) files? \((\d[\d,.]*\s*\w*)\), (\d+) unchanged, (\d+) removed", first.stdout + first.stderr)
        assert m, first.stdout + first.stderr
        shipped = [p for p in (project / "inference_server").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts]
        assert int(m.group(1)) == len(shipped)

        reply = j.chat("hello")
        assert reply.stdout.strip(), f"no tokens arrived\n{reply.stderr}"

        # A changed file is the only one uploaded on the next deploy.
        settings = project / "inference_server" / "settings.py"
        settings.write_text(settings.read_text() + "\n# tuned by the user\n")
        second = j.deploy()
        text = second.stdout + second.stderr
        assert re.search(r"uploaded 1 files? \(", text) and f"{len(shipped) - 1} unchanged, 0 removed" in text, text
        # ...and the server came back healthy with the new code: chat works again.
        assert j.chat("hello").stdout.strip() == reply.stdout.strip()
    finally:
        j.stop()

    deadline = time.monotonic() + 10
    while processes_mentioning(str(project)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(project)) == []

    assert_traffic_matches_azures_specs(traffic)


def assert_traffic_matches_azures_specs(traffic):
    """Every ARM request and answer of the journey, validated against the JSON schema of its
    operation in Azure's published specs (tests/azure_schemas/, see tests/recorded_traffic.py)."""
    from tests.recorded_traffic import check

    report = check(traffic)
    assert report.unknown == [], "exchanges of operations the check does not know"
    assert report.problems == []
    assert {"ResourceGroups_CreateOrUpdate", "Deployments_CreateOrUpdate", "ContainerApps_Get",
            "ContainerApps_ListSecrets", "StorageAccounts_ListKeys"} <= report.operations
    assert report.checked >= 20
    assert report.unvalidated == set()  # every operation of the journey has its schema
    assert "AvailableWorkloadProfiles_Get" in report.operations  # the pre-flight's read
