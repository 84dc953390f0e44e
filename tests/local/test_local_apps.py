"""Container apps: secrets, revisions, replicas as local processes, restart, the log stream,
and state that survives a restart of the local cloud."""

from __future__ import annotations

import http.client
import json
import ssl
import sys
from pathlib import Path

from aitk_tui.cloud.clients import ClientFactory
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import pid_alive, STAND_IN_SERVER, TEST_API_KEY, deploy, wait_for

def _get(cloud, url_host: str, path: str, token: str | None = None, timeout: float = 3.0):
    host, _, port = url_host.partition(":")
    conn = http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                       context=ssl.create_default_context(cafile=cloud.ca_bundle))
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def _health(cloud, fqdn: str):
    try:
        status, body = _get(cloud, fqdn, "/health", timeout=1.0)
        return json.loads(body) if status == 200 else None
    except OSError:
        return None


def _share(factory, out):
    key = factory.storage(SUB).storage_accounts.list_keys(out["RESOURCE_GROUP_NAME"], out["STORAGE_ACCOUNT_NAME"]).as_dict()
    return factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key["keys"][0]["value"])


def test_replica_runs_the_code_on_the_share_and_restarts(local_cloud, local_factory, local_project):
    out = deploy(local_factory, "rg1", local_project, modelPath="/mount")
    apps = local_factory.container_apps(SUB)
    app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
    assert app.configuration.ingress.fqdn == out["ACA_APP_ENDPOINT"]
    assert [s.as_dict() for s in apps.container_apps.list_secrets("rg1", app.name).value] == [
        {"name": "inference-api-key", "value": TEST_API_KEY}]
    assert app.configuration.secrets[0].value is None  # GET never shows secret values
    rev = app.latest_revision_name
    log = local_cloud.log_path(app.id)
    # no code on the share yet: the replica fails (and backs off) with a plain reason
    # (the container's deps step runs for real, from the share, as on Azure)
    wait_for(lambda: log.is_file() and "No module named 'inference_server' on the share" in log.read_text(),
             what="the first failure")
    replicas = apps.container_apps_revision_replicas.list_replicas("rg1", app.name, rev).value
    assert replicas[0].containers[0].ready is False

    share = _share(local_factory, out)
    share.create_directory("inference_server")
    share.get_file_client("inference_server/__init__.py").upload_file(b"")
    share.get_file_client("inference_server/__main__.py").upload_file(STAND_IN_SERVER.encode())
    for name in ("requirements.txt", "deps.py"):
        share.get_file_client(f"inference_server/{name}").upload_file(
            (local_project / "inference_server" / name).read_bytes())
    apps.container_apps_revisions.restart_revision("rg1", app.name, rev)
    first = wait_for(lambda: _health(local_cloud, out["ACA_APP_ENDPOINT"]), what="the stand-in to serve")
    mount = local_cloud.files_root / out["STORAGE_ACCOUNT_NAME"] / out["FILE_SHARE_NAME"]
    assert first["cwd"] == str(mount)
    assert first["key"] == TEST_API_KEY
    assert first["model"] == str(mount) and first["hf_home"] == str(mount / ".cache" / "huggingface")
    # the server runs in the environment the command's deps step made, layered on aitk's interpreter
    assert (Path(first["python"]).parents[1] / "aitk-deps.json").is_file()
    assert Path(first["python"]).resolve() == Path(sys.executable).resolve()

    def ready():
        c = apps.container_apps_revision_replicas.list_replicas("rg1", app.name, rev).value[0].containers[0]
        return c if c.ready else None
    container = wait_for(ready, what="the replica to be ready")
    assert container.started and container.running_state == "Running"
    revision = apps.container_apps_revisions.get_revision("rg1", app.name, rev)
    assert (revision.active, revision.health_state, revision.running_state, revision.replicas) == (
        True, "Healthy", "Running", 1)
    assert apps.container_apps.get("rg1", app.name).latest_ready_revision_name == rev

    apps.container_apps_revisions.restart_revision("rg1", app.name, rev)
    second = wait_for(lambda: (h := _health(local_cloud, out["ACA_APP_ENDPOINT"])) and h["pid"] != first["pid"] and h,
                   what="a new replica process")
    assert second["pid"] != first["pid"]
    wait_for(lambda: not pid_alive(first["pid"]), what="the old process to end")
    local_cloud.stop()
    assert not pid_alive(second["pid"])



def test_log_stream_with_an_auth_token(local_cloud, local_factory, local_project):
    out = deploy(local_factory, "rg1", local_project, modelPath="/mount")
    apps = local_factory.container_apps(SUB)
    app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
    log = local_cloud.log_path(app.id)
    wait_for(lambda: log.is_file() and "No module named 'inference_server' on the share" in log.read_text(), what="a log line")
    replica = apps.container_apps_revision_replicas.list_replicas("rg1", app.name, app.latest_revision_name).value[0]
    endpoint = replica.containers[0].log_stream_endpoint
    assert endpoint.startswith(local_cloud.url + "/_local/logstream/")
    token = apps.container_apps.get_auth_token("rg1", app.name).properties.token
    path = endpoint[len(local_cloud.url):]
    hostport = local_cloud.url.split("//")[1]
    status, body = _get(local_cloud, hostport, path + "?follow=false&output=text&tailLines=5", token)
    assert status == 200 and 0 < len(body.decode().splitlines()) <= 5
    assert _get(local_cloud, hostport, path + "?tailLines=5", "wrong-token")[0] == 401
    # follow=true streams new lines as the replica writes them
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=local_cloud.ca_bundle))
    conn.request("GET", path + "?follow=true&output=text&tailLines=0", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    assert resp.status == 200
    local_cloud.replicas.append_log(app.id, "a line written after the stream opened")
    # The crash-looping replica (nothing deployed) writes its own lines meanwhile: read on.
    lines = [resp.fp.readline().decode() for _ in range(1)]
    while "a line written after the stream opened" not in lines[-1] and len(lines) < 50:
        lines.append(resp.fp.readline().decode())
    assert "a line written after the stream opened" in lines[-1], lines
    conn.close()


def test_state_survives_a_restart_of_the_local_cloud(make_local_cloud, tmp_path, local_project):
    state = tmp_path / "state"
    cloud = make_local_cloud(state)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    out = deploy(factory, "rg1", local_project)
    key = factory.storage(SUB).storage_accounts.list_keys("rg1", out["STORAGE_ACCOUNT_NAME"]).as_dict()
    _share(factory, out).get_file_client("kept.txt").upload_file(b"still here")
    cloud.stop()

    cloud2 = make_local_cloud(state)
    factory2 = ClientFactory(cloud2.endpoints, cloud2.credential())
    assert [g.name for g in factory2.resources(SUB).resource_groups.list()] == ["rg1"]
    d = factory2.deployments(SUB).deployments.get("rg1", "aitk-inference")
    assert {k: v["value"] for k, v in d.properties.outputs.items()} == out
    assert factory2.storage(SUB).storage_accounts.list_keys("rg1", out["STORAGE_ACCOUNT_NAME"]).as_dict() == key
    assert _share(factory2, out).get_file_client("kept.txt").download_file().readall() == b"still here"
    apps = factory2.container_apps(SUB)
    assert apps.container_apps.get("rg1", out["ACA_APP_NAME"]).configuration.ingress.fqdn == out["ACA_APP_ENDPOINT"]
    assert apps.container_apps.list_secrets("rg1", out["ACA_APP_NAME"]).value[0].value == TEST_API_KEY


def test_update_makes_a_revision_stop_start_and_group_delete(local_cloud, local_factory, local_project):
    out = deploy(local_factory, "rg1", local_project, modelPath="/mount")
    apps = local_factory.container_apps(SUB)
    app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
    first = app.latest_revision_name
    patch = {"properties": {"template": {"scale": {"maxReplicas": 3}}}}  # dict bodies go on the wire as they are
    updated = apps.container_apps.begin_update("rg1", app.name, patch).result()
    assert updated.latest_revision_name != first and updated.template.scale.max_replicas == 3
    assert updated.template.containers[0].image  # a merge patch keeps what it does not name
    revs = {r.name: r.active for r in apps.container_apps_revisions.list_revisions("rg1", app.name)}
    assert revs == {first: False, updated.latest_revision_name: True}

    assert apps.container_apps.begin_stop("rg1", app.name).result().running_status == "Stopped"
    assert apps.container_apps_revision_replicas.list_replicas("rg1", app.name, updated.latest_revision_name).value == []
    assert apps.container_apps.begin_start("rg1", app.name).result().running_status == "Running"

    share_dir = local_cloud.files_root / out["STORAGE_ACCOUNT_NAME"]
    assert share_dir.is_dir()
    local_factory.resources(SUB).resource_groups.begin_delete("rg1").result()
    assert not share_dir.exists()
    assert local_cloud.replicas.status(app.id)["state"] == "Stopped"


def test_the_container_command_is_mapped_for_a_local_run(tmp_path):
    from aitk_tui.local.replica_command import build_command

    mount = tmp_path / "my share"
    notes: list[str] = []
    argv = build_command(["/bin/bash", "-c", "cd /mount && pip install -r inference_server/requirements.txt && "
                          "python3 -m inference_server"], mount, notes.append)
    # the pip step is kept: `pip` on the replica's PATH runs it (replica_deps)
    assert argv == ["/bin/bash", "-c", f"cd '{mount}' && pip install -r inference_server/requirements.txt && "
                    "python3 -m inference_server"]
    assert notes == []
    # AI Toolkit's own template joins its steps with '; '
    argv = build_command(["/bin/bash", "-c", "cd /mount/inference; python3 -m pip install -r req.txt; "
                          "python3 ./gradio_chat.py --mountain /mount"], mount, notes.append)
    assert argv[2] == (f"cd '{mount}'/inference ; python3 -m pip install -r req.txt ; "
                       f"python3 ./gradio_chat.py --mountain '{mount}'")
    assert build_command(["python3", "/mount/app.py"], mount, notes.append) == ["python3", f"{mount}/app.py"]
