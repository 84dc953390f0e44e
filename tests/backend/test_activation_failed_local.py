"""A replica that never becomes ready, on the local cloud: its revision reports ACA's
``ActivationFailed`` with "Deployment Progress Deadline Exceeded. 0/1 replicas ready." once the
template's startup probe gives up; status says so (not "asleep"), and the chat's wake path stops
and says why instead of waiting. All through the real SDK clients; the probe is the project's
own template with a short limit, as a user could write it."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from pathlib import Path

import pytest

from aitk_tui.chat.client import ChatClient, ChatError
from aitk_tui.chat.wake import wake
from aitk_tui.cli.status import status_lines
from aitk_tui.cloud.endpoint_status import health_words
from aitk_tui.config.inference_config import InferenceConfig
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from aitk_tui.local.recorder import Recorder
from tests.fixtures_local import deploy, upload_stand_in, wait_for
from tests.recorded_traffic import check

pytestmark = pytest.mark.timeout(120)

DEADLINE = "Deployment Progress Deadline Exceeded. 0/1 replicas ready."
HANGS = "import time\nprint('inference_server: loading (forever)', flush=True)\ntime.sleep(3600)\n"


def _short_startup_probe(project: Path) -> None:
    """The template's Startup probe, cut to 1 + 1 x 3 = 4 s (the shipped one allows 1210 s)."""
    path = project / "infra" / "provision" / "inference.json"
    text = path.read_text()
    template = json.loads(text)
    [app] = [r for r in template["resources"] if r["type"] == "Microsoft.App/containerApps"]
    [startup] = [p for p in app["properties"]["template"]["containers"][0]["probes"] if p["type"] == "Startup"]
    startup.update(initialDelaySeconds=1, periodSeconds=1, failureThreshold=3)
    path.write_text(json.dumps(template, indent=2))


def test_a_replica_that_never_becomes_ready_fails_activation_and_is_not_asleep(local_cloud, local_factory,
                                                                               local_project, session, tmp_path):
    local_cloud.recorder = Recorder(tmp_path / "arm.jsonl")  # every ARM exchange, checked against the specs below
    _short_startup_probe(Path(local_project))
    out = deploy(local_factory, "rg-hang", local_project, modelPath="/mount")
    config = InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME="rg-hang", **{k: out[k] for k in (
        "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME", "ACA_APP_NAME", "ACA_APP_ENDPOINT")})
    apps = local_factory.container_apps(SUB)
    storage_key = local_factory.storage(SUB).storage_accounts.list_keys("rg-hang", out["STORAGE_ACCOUNT_NAME"])
    share = local_factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"],
                                storage_key.as_dict()["keys"][0]["value"])
    share.create_directory("inference_server")
    share.get_file_client("inference_server/__init__.py").upload_file(b"")
    share.get_file_client("inference_server/__main__.py").upload_file(HANGS.encode())  # starts, never listens
    name = out["ACA_APP_NAME"]
    revision = apps.container_apps.get("rg-hang", name).latest_revision_name
    apps.container_apps_revisions.restart_revision("rg-hang", name, revision)

    # The platform's view, through the SDK: ACA's words, which the spec's enum does not have.
    rev = wait_for(lambda: (r := apps.container_apps_revisions.get_revision("rg-hang", name, revision).as_dict())
                   ["properties"]["runningState"] == "ActivationFailed" and r, timeout=40, interval=0.5,
                   what="the revision's activation to fail")
    assert rev["properties"]["runningStateDetails"] == DEADLINE
    assert rev["properties"]["healthState"] == "Unhealthy"

    # aitk status: failed with Azure's reason, never "asleep".
    st = asyncio.run(session.endpoint_status(config))
    assert st.health == "failed" and health_words(st) == "failed: no replica can start"
    assert st.failure_reason.startswith(f"Revision {revision} failed to activate (ActivationFailed): "
                                        "Deployment Progress Deadline Exceeded")
    text = "\n".join(status_lines(st))
    assert "asleep" not in text and "ActivationFailed" in text
    assert asyncio.run(session.status(config)).revision_failed  # the header's read says the same

    # The chat's wake path: /health is held (nothing listens behind the ingress); the platform says why.
    api_key = asyncio.run(session.api_key(config))

    async def chat_wake() -> ChatError:
        client = ChatClient(config.endpoint_url, api_key, verify=session.endpoints.trust_for(config.endpoint_url))
        try:
            async with aclosing(wake(client, platform=lambda: session.revision_failure(config),
                                     timeout_s=60)) as events:
                async for _ in events:
                    pass
        except ChatError as e:
            return e
        finally:
            await client.aclose()
        raise AssertionError("the wake path ended without saying why")

    error = asyncio.run(chat_wake())
    assert error.message == "the endpoint cannot wake: no replica can start"
    assert DEADLINE.rstrip(".") in error.detail

    # A server that starts clears it: the next activation succeeds.
    upload_stand_in(share)
    apps.container_apps_revisions.restart_revision("rg-hang", name, revision)
    wait_for(lambda: apps.container_apps_revisions.get_revision("rg-hang", name, revision).as_dict()
             ["properties"]["runningState"] == "Running", timeout=30, interval=0.3, what="a running revision")
    assert asyncio.run(session.endpoint_status(config)).health != "failed"

    # What the local cloud answered, ActivationFailed included, is what Azure's specs (and Azure) allow.
    report = check(tmp_path / "arm.jsonl")
    assert report.problems == [] and report.unknown == []
    assert {"ContainerAppsRevisions_GetRevision", "ContainerAppsRevisions_ListRevisions",
            "ContainerAppsRevisionReplicas_ListReplicas", "ContainerApps_Get"} <= report.operations
