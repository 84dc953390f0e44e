"""The whole loop with the real inference server: provision, upload the code to the share,
restart the revision, and chat with the replica over HTTPS. No model on the share, so the
local cloud serves the demo model (here: the tiny model already built for the session)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request

import pytest

from aitk_tui.cloud.clients import ClientFactory
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import TEST_API_KEY, deploy, upload_folder


def _call(cloud, url: str, body: dict | None = None, key: str | None = TEST_API_KEY):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=cloud.ca_bundle), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return None, None


@pytest.mark.timeout(120)
def test_real_inference_server_on_the_demo_model(make_local_cloud, local_project, tiny_model):
    # the tiny model's build folder is a complete demo-model build: reused, not rebuilt
    cloud = make_local_cloud(demo_dir=tiny_model.model_dir.parent)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    out = deploy(factory, "rg1", local_project)
    key = factory.storage(SUB).storage_accounts.list_keys("rg1", out["STORAGE_ACCOUNT_NAME"]).as_dict()["keys"][0]["value"]
    share = factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key)
    assert upload_folder(share, local_project / "inference_server", "inference_server") > 3
    apps = factory.container_apps(SUB)
    app = apps.container_apps.get("rg1", out["ACA_APP_NAME"])
    apps.container_apps_revisions.restart_revision("rg1", app.name, app.latest_revision_name)

    base = f"https://{out['ACA_APP_ENDPOINT']}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _call(cloud, base + "/health", key=None)[0] != 200:
        time.sleep(0.3)
    log = cloud.log_path(app.id).read_text()
    assert _call(cloud, base + "/health", key=None)[0] == 200, log[-3000:]
    assert ("no base model at /mount/model-cache/microsoft/Phi-3-mini-4k-instruct: serving the built-in demo "
            "model, whose output is random text") in log
    assert _call(cloud, base + "/v1/models", key="wrong")[0] == 401
    status, models = _call(cloud, base + "/v1/models")
    assert status == 200 and models["data"]
    status, reply = _call(cloud, base + "/v1/chat/completions", {
        "model": models["data"][0]["id"], "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})
    assert status == 200 and reply["choices"][0]["message"]["content"]

    def ready() -> bool:
        replica = apps.container_apps_revision_replicas.list_replicas("rg1", app.name, app.latest_revision_name).value[0]
        return replica.containers[0].ready is True
    deadline = time.monotonic() + 10
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready()
