"""The Endpoint view's back-end against the local cloud, through the real SDK clients:
revisions, replicas, health, the system log stream, and the failure reason of a replica
that cannot load its model; "not provisioned" after the app is deleted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.cloud.endpoint_status import EndpointStatus, ReplicaInfo, console_cause, diagnose
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.events import LogLine
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import REPO_ROOT, deploy, upload_folder, upload_stand_in, wait_for


def _config(out: dict, group: str) -> InferenceConfig:
    return InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=group, **{k: out[k] for k in (
        "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME", "ACA_APP_NAME", "ACA_APP_ENDPOINT")})


def _share(factory, out: dict, group: str):
    key = factory.storage(SUB).storage_accounts.list_keys(group, out["STORAGE_ACCOUNT_NAME"]).as_dict()
    return factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key["keys"][0]["value"])


def _status(session, config) -> EndpointStatus:
    return asyncio.run(session.endpoint_status(config))


def _system_lines(session, config) -> list[LogLine]:
    async def collect():
        return [ev async for ev in session.replica_logs(config, follow=False, tail_lines=100, kind="system")]
    return asyncio.run(collect())


def test_healthy_app_shows_its_running_replica_and_active_revision(local_cloud, local_factory, local_project,
                                                                   session):
    out = deploy(local_factory, "rg-ep", local_project, modelPath="/mount")
    config = _config(out, "rg-ep")
    upload_stand_in(_share(local_factory, out, "rg-ep"))
    apps = local_factory.container_apps(SUB)
    apps.container_apps_revisions.restart_revision("rg-ep", out["ACA_APP_NAME"],
                                                   apps.container_apps.get("rg-ep", out["ACA_APP_NAME"]).latest_revision_name)
    st = wait_for(lambda: (s := _status(session, config)).health == "ok" and s.ready_replicas == 1 and s, timeout=30,
                  what="a healthy endpoint whose replica the platform calls ready")
    assert st.provisioned and st.provisioning_state == "Succeeded" and st.running_state == "Running"
    assert st.endpoint == config.endpoint_url and st.failure_reason is None
    [rev] = st.revisions
    assert (rev.name, rev.active, rev.traffic, rev.replicas) == (st.latest_revision, True, 100, 1)
    assert rev.created and rev.health_state == "Healthy"
    [replica] = st.replicas
    assert replica.ready and replica.running_state == "Running" and replica.revision == rev.name
    assert replica.created and replica.restart_count >= 0
    assert (st.scale.min_replicas, st.scale.max_replicas) == (0, 2)  # the template's defaults
    assert st.cost is not None and st.cost.label == "estimate"

    # The system log says what the platform did, in ACA's event shape, through the event stream.
    system = _system_lines(session, config)
    reasons = [ln.text.split(":", 1)[0] for ln in system]
    assert {"AssigningReplica", "ContainerStarted", "ReplicaReady"} <= set(reasons)
    assert all(ln.kind == "system" for ln in system)
    assert reasons.index("AssigningReplica") < reasons.index("ContainerStarted") < reasons.index("ReplicaReady")


def test_replica_that_cannot_load_its_model_says_why(local_cloud, local_factory, local_project, session):
    # The real server on the share, with a model folder that holds no model: it exits at start-up
    # and the supervisor restarts it, as ACA would, again and again.
    out = deploy(local_factory, "rg-bad", local_project, modelPath="/mount/models/missing")
    config = _config(out, "rg-bad")
    share = _share(local_factory, out, "rg-bad")
    upload_folder(share, REPO_ROOT / "inference_server", "inference_server")
    share.create_directory("models")
    share.create_directory("models/missing")  # exists (no demo model stands in), but holds no model
    apps = local_factory.container_apps(SUB)
    rev = apps.container_apps.get("rg-bad", out["ACA_APP_NAME"]).latest_revision_name
    apps.container_apps_revisions.restart_revision("rg-bad", out["ACA_APP_NAME"], rev)

    st = wait_for(lambda: (s := _status(session, config)).failure_reason and "config.json" in s.failure_reason and s,
                  timeout=60, interval=0.5, what="a failure reason naming the cause")
    assert st.failure_reason.startswith("The replica keeps restarting")
    assert "models/missing has no config.json" in st.failure_reason and st.failure_reason.endswith(".")
    assert st.health != "ok" and not st.replicas[0].ready if st.replicas else True
    warnings = [ln.text for ln in _system_lines(session, config) if ln.warning]
    assert any(w.startswith("ContainerTerminated: Container was terminated with exit code '2'") for w in warnings)


def test_after_down_the_app_is_not_provisioned(local_cloud, local_factory, local_project, session, capsys):
    out = deploy(local_factory, "rg-gone", local_project, modelPath="/mount")
    config = _config(out, "rg-gone")
    assert _status(session, config).provisioned
    local_factory.container_apps(SUB).container_apps.begin_delete("rg-gone", out["ACA_APP_NAME"]).result()
    st = _status(session, config)
    assert (st.provisioned, st.health, st.replicas, st.revisions) == (False, "not provisioned", (), ())
    assert st.to_json()["provisioned"] is False


def test_status_cli_json_text_and_logs_system(cli_cloud, local_project, local_factory, capsys):
    root = Path(local_project)
    assert main(["--project", str(root), "groups", "create", "rg-cli", "--location", "eastus", "--local"]) == 0
    assert main(["--project", str(root), "provision", "--local", "--subscription", SUB, "--resource-group", "rg-cli",
                 "--yes"]) == 0
    capsys.readouterr()
    assert main(["--project", str(root), "status", "--local", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["provisioned"] is True and st["scale"]["min_replicas"] == 0
    assert [r["active"] for r in st["revisions"]] == [True] and st["revisions"][0]["traffic"] == 100
    assert isinstance(st["replicas"], list) and "failure_reason" in st and st["read_at"].endswith("Z")

    assert main(["--project", str(root), "status", "--local"]) == 0
    text = capsys.readouterr().out
    revision = st["revisions"][0]["name"].rsplit("--", 1)[1]
    assert f"revisions:    1 (latest {revision})" in text and "REVISION" in text and "health:" in text
    assert "replicas:     " in text and "scale:        min 0, max 2" in text
    assert max(len(line) for line in text.splitlines()) <= 80

    def why() -> str | None:  # nothing deployed yet: the container's deps step says so (as on Azure)
        assert main(["--project", str(root), "status", "--local", "--json"]) == 0
        return json.loads(capsys.readouterr().out)["failure_reason"]
    reason = wait_for(lambda: (r := why()) and "inference_server" in r and r, timeout=30, what="the cause")
    assert reason == ("The replica keeps restarting: ModuleNotFoundError: No module named 'inference_server' on the "
                      "share (deploy the code first).")

    wait_for(lambda: cli_cloud.replicas.system_log_path(cli_cloud.store.resources(
        full_type="Microsoft.App/containerApps")[0]["id"]).is_file(), what="a system event")
    assert main(["--project", str(root), "logs", "--local", "--system", "--no-follow"]) == 0
    assert "AssigningReplica: Replica has been scheduled" in capsys.readouterr().out


# -- the sentence, from the state and the logs (no cloud) -------------------------------------------
def _st(**kw) -> EndpointStatus:
    return EndpointStatus("app", True, **{"health": "unreachable", **kw})


def _replica(restarts=0, ready=False, details=None) -> ReplicaInfo:
    return ReplicaInfo("app--1-abc-x7k2p", "app--1", "NotRunning", ready, restarts, None, details)


def test_console_cause_reads_the_servers_json_log_and_tracebacks():
    lines = ['{"ts": "t", "level": "info", "logger": "x", "msg": "loading"}',
             '{"ts": "t", "level": "error", "logger": "inference_server", "msg": "model load failed: OSError: '
             'no file named model.safetensors"}',
             "2025-06-01T10:00:00Z [aitk-local] replica exited with code 3; restarting in 2 s"]
    assert console_cause(lines) == "model load failed: OSError: no file named model.safetensors"
    assert console_cause(["Traceback (most recent call last):", '  File "x", line 1',
                          "ModuleNotFoundError: No module named 'inference_server'"]) == \
        "ModuleNotFoundError: No module named 'inference_server'"
    assert console_cause(["/usr/bin/python3: Error while finding module specification for 'inference_server."
                          "__main__' (ModuleNotFoundError: No module named 'inference_server' on the share (deploy "
                          "the code first))"]) == ("ModuleNotFoundError: No module named 'inference_server' on the "
                                                   "share (deploy the code first)")
    assert console_cause([]) is None and console_cause(["all fine", "", "x" * 10_000]) is None
    assert len(console_cause(["ValueError: " + "y" * 5000])) == 300


@pytest.mark.parametrize(("st", "system", "console", "expected"), [
    (_st(replicas=(_replica(restarts=4),)), [], ["inference_server: adapter folder /m/a does not exist"],
     "The replica keeps restarting (4 restarts): inference_server: adapter folder /m/a does not exist."),
    (_st(), [LogLine("AssigningReplica: Replica could not be assigned: insufficient GPU quota (MaxRegionalQuota"
                     "Exceeded)", kind="system", warning=True)], [],
     "No replica could be assigned: Replica could not be assigned: insufficient GPU quota "
     "(MaxRegionalQuotaExceeded)."),
    (_st(replicas=(_replica(),)), [LogLine("ProbeFailed: Probe of StartUp failed with status code 503",
                                           kind="system", warning=True)], [],
     "The replica does not pass its health probe: Probe of StartUp failed with status code 503."),
    (_st(replicas=(_replica(restarts=1, details="CrashLoopBackOff"),)), [], [],
     "The replica keeps restarting: CrashLoopBackOff."),
    (_st(health="ok", replicas=(_replica(restarts=9, ready=True),)), [], ["ValueError: old"], None),
    (_st(health="loading", replicas=(_replica(),)), [],
     ['{"level": "error", "msg": "model load failed: OSError: no weights in /mount/model"}'],
     "The model failed to load: model load failed: OSError: no weights in /mount/model."),
    (_st(health="loading", replicas=(_replica(),)), [], ["ConnectionError: retrying the share"], None),
    # serving again after earlier restarts, but the ingress answers 502: not "keeps restarting"
    (_st(health="HTTP 502", replicas=(_replica(restarts=3, ready=True),)),
     [LogLine("ContainerTerminated: exit code '1'", kind="system", warning=True)], ["ValueError: old"], None),
    (_st(health="asleep"), [], [], None),  # scaled to zero is not a failure
    (_st(replicas=(_replica(),)), [], [], None),  # still starting, nothing wrong yet
])
def test_diagnose_says_why_in_one_sentence(st, system, console, expected):
    assert diagnose(st, system, console) == expected


def test_status_watch_redraws_until_ctrl_c(cli_cloud, local_project, local_factory, session, capsys, monkeypatch):
    from aitk_tui.cli import status as cli_status

    out = deploy(local_factory, "rg-watch", local_project, modelPath="/mount")
    config = _config(out, "rg-watch")

    async def watch_a_while():
        try:
            await asyncio.wait_for(cli_status.show(session, config, as_json=True, watch=0.2), 8)
        except asyncio.TimeoutError:
            pass
    asyncio.run(watch_a_while())
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(frames) >= 2 and all(f["name"] == out["ACA_APP_NAME"] for f in frames)
    assert len({f["read_at"] for f in frames}) >= 1 and frames[-1]["provisioned"] is True

    # Ctrl+C ends a watch as it ends every command: exit 130, one "interrupted" line
    (Path(local_project) / "infra" / "inference.config.json").write_text(json.dumps(config.model_dump()))

    async def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_status, "show", interrupted)
    rc = main(["--project", str(local_project), "status", "--local", "--watch"])
    assert rc == 130 and capsys.readouterr().err == "aitk: interrupted\n"
    assert main(["--project", str(local_project), "logs", "--local", "--system", "--tail", "-5", "--no-follow"]) == 0


def test_log_stream_refuses_a_bad_tail_with_400(local_cloud, local_factory, local_project):
    import http.client
    import ssl

    out = deploy(local_factory, "rg-tail", local_project, modelPath="/mount")
    apps = local_factory.container_apps(SUB)
    app = apps.container_apps.get("rg-tail", out["ACA_APP_NAME"])
    token = apps.container_apps.get_auth_token("rg-tail", app.name).properties.token
    host, _, port = local_cloud.url.split("//")[1].partition(":")
    for endpoint in (app.event_stream_endpoint, app.event_stream_endpoint + "/"):
        path = endpoint[len(local_cloud.url):]
        for tail, expected in (("abc", 400), ("5e-324", 400), (str(2**64), 200), ("-3", 200), ("0", 200)):
            conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                               context=ssl.create_default_context(cafile=local_cloud.ca_bundle))
            conn.request("GET", f"{path}?follow=false&tailLines={tail}", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status == expected, (tail, body)
            if expected == 200 and tail in ("-3", "0"):
                assert body == b""  # a negative count is no lines, not "all but the first three"


def test_system_event_lines_read_as_reason_and_message():
    from aitk_tui.cloud.logs import system_event_text

    line = json.dumps({"TimeStamp": "2025-06-01 10:00:00 +0000 UTC", "Type": "Warning", "ContainerAppName": "app",
                       "RevisionName": "app--0000001", "ReplicaName": "app--0000001-646779b4b6-x7k2p",
                       "Msg": "Probe of StartUp failed with status code: 503", "Reason": "ProbeFailed",
                       "EventSource": "ContainerAppController", "Count": 3})
    assert system_event_text(line) == ("ProbeFailed: Probe of StartUp failed with status code: 503", "x7k2p", True)
    assert system_event_text('{"Msg": "Connecting to the events collector...", "Type": "Normal"}') == (
        "Connecting to the events collector...", "system", False)
    for odd in ("plain text", "[1, 2]", "{", "", "null", "x" * 100_000, '{"Reason": 5e-324}'):
        text, source, warning = system_event_text(odd)
        assert isinstance(text, str) and source == "system" and warning is False


def test_an_unknown_log_kind_is_refused(session):
    config = InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME="rg", ACA_APP_NAME="app")

    async def collect():
        return [ev async for ev in session.replica_logs(config, follow=False, kind="kernel")]
    [event] = asyncio.run(collect())
    assert event.config_error and "console and system" in event.message


def test_a_scaled_to_zero_app_is_asleep_not_failing(make_local_cloud, local_project):
    from aitk_tui.cloud.clients import ClientFactory
    from aitk_tui.cloud.session import CloudSession
    from aitk_tui.project import Project

    cloud = make_local_cloud(idle_s=1.0)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    session = CloudSession.for_cloud(Project(Path(local_project)), cloud.endpoints, cloud.credential())
    out = deploy(factory, "rg-zzz", local_project, modelPath="/mount")
    config = _config(out, "rg-zzz")
    upload_stand_in(_share(factory, out, "rg-zzz"))
    apps = factory.container_apps(SUB)
    apps.container_apps_revisions.restart_revision("rg-zzz", out["ACA_APP_NAME"],
                                                   apps.container_apps.get("rg-zzz", out["ACA_APP_NAME"]).latest_revision_name)
    st = wait_for(lambda: (s := _status(session, config)).health == "asleep" and s, timeout=40, interval=0.3,
                  what="the app to scale to zero")
    # Looking did not wake it: no replica, no failure, and the revision says why it has none.
    assert st.replicas == () and st.failure_reason is None and st.revisions[0].replicas == 0
    assert st.revisions[0].running_state == "ScaledToZero"
    assert _status(session, config).health == "asleep"
    assert any(ln.text.startswith("ScaledToZero:") for ln in _system_lines(session, config))


def test_an_adapter_on_the_share_without_its_base_is_refused_not_swapped(local_cloud, local_factory, local_project,
                                                                        session):
    """The share holds the user's adapter but no base model at modelPath. Before: the local
    cloud served its demo model and demo adapter instead, and said only "no base model".
    Now the replica does not start, and the status's why says which adapter and what to do."""
    out = deploy(local_factory, "rg-nobase", local_project, adapterPath="/mount/models/default/adapter")
    config = _config(out, "rg-nobase")
    share = _share(local_factory, out, "rg-nobase")
    upload_stand_in(share)
    for d in ("models", "models/default", "models/default/adapter"):
        share.create_directory(d)
    share.get_file_client("models/default/adapter/adapter_config.json").upload_file(b'{"peft_type": "LORA"}')
    apps = local_factory.container_apps(SUB)
    rev = apps.container_apps.get("rg-nobase", out["ACA_APP_NAME"]).latest_revision_name
    apps.container_apps_revisions.restart_revision("rg-nobase", out["ACA_APP_NAME"], rev)

    st = wait_for(lambda: (s := _status(session, config)).failure_reason and "has no base" in s.failure_reason
                  and s, timeout=30, interval=0.3, what="a failure reason naming the adapter without its base")
    assert st.failure_reason.startswith("The replica")  # "keeps restarting" or "'s container could not start"
    assert "cannot start the replica" not in st.failure_reason  # the lead says it once, not twice
    assert st.failure_reason.endswith(
        ": the adapter at /mount/models/default/adapter has "
        "no base model: no model at /mount/model-cache/microsoft/Phi-3-mini-4k-instruct; upload it with aitk models "
        "upload --adapter DIR --model BASE_DIR, then provision again.")
    assert st.health != "ok"
    log = local_cloud.log_path(apps.container_apps.get("rg-nobase", out["ACA_APP_NAME"]).id).read_text()
    assert "demo model" not in log  # none stood in
