"""Secrets never reach what aitk prints or saves (issue 12, item 10).

Replica log lines (the TUI's log pane and `aitk logs`), the CLI's event printer, a saved
activity log and a saved chat transcript; and the production credential wrapper answers
a Continuous Access Evaluation challenge injected by the local cloud.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.cli._printer import EventPrinter
from aitk_tui.cloud.auth import CachedCredential
from aitk_tui.cloud.session import CloudSession
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.config.parameters import ParametersDocument
from aitk_tui.errors import register_secret
from aitk_tui.events import Done, Failed, HealthWait, Info, LogLine, ResourceProgress
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB
from aitk_tui.project import Project

pytestmark = pytest.mark.timeout(120)

BEARER = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secretpayload.signature0123"
ACCOUNT_KEY = "c2VjcmV0LXN0b3JhZ2Uta2V5LTAxMjM0NTY3ODkwMTIzNDU2Nzg5MA=="
SAS_SIG = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"


def _secret_lines(api_key: str) -> list[str]:
    """What a careless replica (or library) might print."""
    return [f"INFO: INFERENCE_API_KEY={api_key}",
            f"DEBUG: headers {{'Authorization': 'Bearer {BEARER}'}}",
            f"WARN: DefaultEndpointsProtocol=https;AccountName=x;AccountKey={ACCOUNT_KEY};EndpointSuffix=core",
            f"GET https://x.file.core.windows.net/share/f?sv=2024&sig={SAS_SIG}&se=2030"]


def _assert_clean(text: str, api_key: str) -> None:
    for secret in (api_key, BEARER, ACCOUNT_KEY, SAS_SIG):
        assert secret not in text


async def _provision(session: CloudSession) -> InferenceConfig:
    await session.create_resource_group(SUB, "rg-demo", "eastus")
    params = ParametersDocument.load(session.project.parameters_path)
    assert isinstance([e async for e in session.provision(SUB, "rg-demo", params)][-1], Done)
    return InferenceConfig.load(session.project.config_path)


def _app_id(config: InferenceConfig) -> str:
    return (f"/subscriptions/{SUB}/resourceGroups/{config.RESOURCE_GROUP_NAME}/providers/Microsoft.App/"
            f"containerApps/{config.ACA_APP_NAME}")


def _write_replica_lines(cloud, config: InferenceConfig, lines: list[str]) -> None:
    path = cloud.log_path(_app_id(config))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# -- `aitk logs` ------------------------------------------------------------------------------
async def test_replica_log_lines_are_redacted_in_the_stream(session, local_cloud):
    config = await _provision(session)
    api_key = await session.api_key(config)  # what the TUI's F9 does: the key is now a known secret
    _write_replica_lines(local_cloud, config, _secret_lines(api_key))
    lines = [e async for e in session.replica_logs(config, follow=False, tail_lines=50)]
    text = "\n".join(e.text for e in lines if isinstance(e, LogLine))
    assert "INFERENCE_API_KEY=***" in text and "AccountKey=***" in text and "sig=***" in text
    _assert_clean(text, api_key)


def test_aitk_logs_prints_replica_lines_redacted(cli_cloud, local_project, local_factory, capsys):
    root = Path(local_project)
    assert main(["--project", str(root), "groups", "create", "rg-demo", "--location", "eastus", "--local"]) == 0
    assert main(["--project", str(root), "provision", "--local", "--yes", "--resource-group", "rg-demo"]) == 0
    config = InferenceConfig.load(root / "infra/inference.config.json")
    secrets = local_factory.container_apps(SUB).container_apps.list_secrets("rg-demo", config.ACA_APP_NAME)
    api_key = next(s["value"] for s in secrets["value"] if s["name"] == "inference-api-key")
    # `aitk logs` never fetched the API key: only the shapes of secrets can be recognised
    _write_replica_lines(cli_cloud, config, [f'INFO: settings {{"api_key": "{api_key}"}}',
                                             *_secret_lines("not-registered")[1:]])
    capsys.readouterr()
    assert main(["--project", str(root), "logs", "--local", "--no-follow", "--tail", "20"]) == 0
    out, err = capsys.readouterr()
    assert '"api_key": "***"' in out and "Bearer ***" in out
    _assert_clean(out + err, api_key)


# -- the CLI's event printer ------------------------------------------------------------------
def test_the_cli_event_printer_redacts_every_kind_of_event(capsys):
    key = "printer-secret-0123456789abcdef"
    register_secret(key)
    err, out = io.StringIO(), io.StringIO()
    printer = EventPrinter(err=err, out=out)
    for event in (Info(f"using key {key}"), Info(f"Bearer {BEARER}", "warning"),
                  ResourceProgress("Microsoft.App/containerApps", "app", "Failed", 1.0, f"AccountKey={ACCOUNT_KEY}"),
                  HealthWait("HTTP 401", 3.0, f"token {key}"), LogLine(f"[replica] key={key}"),
                  Done(f"done with {key}"), Failed(f"failed with {key}", f"GET https://a.example/s?sv=1&sig={SAS_SIG}")):
        printer(event)
    text = err.getvalue() + out.getvalue() + "".join(capsys.readouterr())
    assert text.count("***") >= 7
    _assert_clean(text, key)


# -- the TUI: log pane, saved activity log, saved chat transcript -----------------------------
async def test_log_pane_and_saved_activity_log_hold_no_secret(local_project, local_cloud, fixed_clock):
    from aitk_tui.ui.app import create_app
    from aitk_tui.ui.settings import UISettings
    from tests.ui.conftest import settle

    project = Project(local_project)
    session = CloudSession.for_cloud(project, local_cloud.endpoints, local_cloud.credential())
    config = await _provision(session)
    api_key = await session.api_key(config)
    _write_replica_lines(local_cloud, config, _secret_lines(api_key))

    async def open_session(project, **kwargs):
        return session

    app = create_app(project, local=True, session_factory=open_session, clock=fixed_clock, settings=UISettings.load())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.main.start_operation("replica_logs", "Replica logs",
                            lambda: session.replica_logs(config, follow=False, tail_lines=50))
        await settle(pilot, 0.5)
        app.main.activity.flush()
        pane = "\n".join(app.main.activity.log_pane.lines)
        assert "INFERENCE_API_KEY=***" in pane
        _assert_clean(pane, api_key)
        await app.main.run_action("save_activity")
        await settle(pilot)
    saved = list((project.state_dir / "logs").glob("activity-*.log"))
    assert len(saved) == 1
    text = saved[0].read_text()
    assert "INFERENCE_API_KEY=***" in text
    _assert_clean(text, api_key)


class EchoingClient:
    """An endpoint whose model repeats what it was told (here: a key pasted into the chat)."""

    def __init__(self, base_url: str, api_key: str | None, *, verify=True) -> None:
        self.base_url = base_url

    async def stream_chat(self, messages, **kw):
        from aitk_tui.chat.client import Delta, Finished

        yield Delta("You said: " + messages[-1]["content"])
        yield Finished("stop", None, 0.01, 10.0, "m")

    async def aclose(self) -> None:
        pass


async def test_a_saved_chat_transcript_holds_no_secret(make_app, ui_project):
    from textual.widgets import Input

    from tests.ui.conftest import settle

    key = "transcript-secret-0123456789abcdef"
    app, _ = make_app(chat_client_factory=EchoingClient)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        chat = await app.main.ensure_pane("chat")
        app.main.show_tab("chat")
        chat.set_endpoint("https://app.example", key)  # the app's key, as F9 sets it
        register_secret(key)  # (the session registers every key it fetches)
        chat.query_one("#chat-system", Input).value = f"Use Authorization: Bearer {BEARER}"
        await chat.send(f"my key is {key}")
        await settle(pilot)
        await app.main.run_action("save_chat")
        await settle(pilot)
    saved = list((ui_project.state_dir / "chats").glob("chat-*.md"))
    assert len(saved) == 1
    text = saved[0].read_text()
    assert "my key is ***" in text and "You said: my key is ***" in text
    _assert_clean(text, key)


# -- the production credential wrapper answers a CAE challenge -------------------------------
async def test_the_cached_credential_answers_a_claims_challenge(local_project, local_cloud, issued_tokens):
    project = Project(local_project)
    credential = CachedCredential(local_cloud.credential())
    session = CloudSession.for_cloud(project, local_cloud.endpoints, credential)
    await session.create_resource_group(SUB, "rg-cae", "eastus")
    before = credential.get_token("https://management.azure.com/.default").token
    local_cloud.inject("token_expired", count=1, path_contains="/resourcegroups")
    groups = await session.list_resource_groups(SUB)  # challenged, answered with new claims, retried
    assert [g.name for g in groups] == ["rg-cae"]
    assert local_cloud.faults.list() == []
    after = credential.get_token("https://management.azure.com/.default").token
    assert after != before  # the revoked token was replaced in the shared cache
    assert local_cloud.verifier.check(after) is None and local_cloud.verifier.is_revoked(before)
    # a client made after the challenge works at once with the cached (new) token
    fresh = CloudSession.for_cloud(project, local_cloud.endpoints, credential)
    assert [g.name for g in await fresh.list_resource_groups(SUB)] == ["rg-cae"]
    # a second challenge on a whole provision still ends well
    local_cloud.inject("token_expired", count=2, path_contains="operationStatuses")
    config = await _provision_existing(fresh)
    assert not config.missing()


async def _provision_existing(session: CloudSession) -> InferenceConfig:
    params = ParametersDocument.load(session.project.parameters_path)
    events = [e async for e in session.provision(SUB, "rg-cae", params)]
    assert isinstance(events[-1], Done), events[-1]
    return InferenceConfig.load(session.project.config_path)


def test_a_secret_containing_another_is_redacted_whole():
    """Registered shortest-first, the short secret inside the long one was replaced first and
    the rest of the long one leaked; checking only that each whole secret is absent missed it."""
    from aitk_tui.errors import redact, register_secret

    inner = "k3y-inner-7f2a"
    outer = "prefix-QWERTY-" + inner + "-suffix-ZXCVBN"
    for order in ((inner, outer), (outer, inner)):
        for s in order:
            register_secret(s)
        text = redact(f"key={outer}; again {inner}.")
        assert text == "key=***; again ***.", order
        for fragment in ("prefix-QWERTY", "suffix-ZXCVBN", "7f2a"):
            assert fragment not in text
