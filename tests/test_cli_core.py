"""What the CLI's core now knows once (issue 20): whether an error is the user's to fix
(exit 2) is said by its class, whichever path reports it; and what TLS trusts on the way to
an endpoint is the same answer as the TUI's (``CloudEndpoints.trust_for``)."""

from __future__ import annotations

import pytest

from aitk_tui.cli import main
from aitk_tui.cloud.sdkerrors import InputError, NotSignedInError, failed_event
from aitk_tui.config.inference_config import ConfigFileError
from aitk_tui.config.parameters import ParametersFileError, UnknownParameterError
from aitk_tui.endpoints import CloudEndpoints
from aitk_tui.errors import AitkError

CONFIGURATION = [InputError, NotSignedInError, ConfigFileError, ParametersFileError, UnknownParameterError]


def _raised_to_main(monkeypatch, tmp_path, error: AitkError) -> int:
    """The exit code when a command raises ``error``."""
    import aitk_tui.backend

    async def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(aitk_tui.backend, "open_session", refuse)
    (tmp_path / "infra").mkdir(exist_ok=True)
    (tmp_path / "infra" / "inference.config.json").write_text(
        '{"SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "RESOURCE_GROUP_NAME": "g", "ACA_APP_NAME": "app", "ACA_APP_ENDPOINT": "a.example"}')
    return main(["--project", str(tmp_path), "status"])


@pytest.mark.parametrize("cls", CONFIGURATION)
def test_a_configuration_error_exits_2_whichever_path_reports_it(cls, tmp_path, monkeypatch, capsys):
    error = cls("Fix this.", "how")
    assert failed_event(error).config_error is True  # reported as a Failed event: the CLI exits 2
    assert _raised_to_main(monkeypatch, tmp_path, error) == 2  # raised: exit 2 too
    assert capsys.readouterr().err == "aitk: error: Fix this. (how)\n"


def test_a_failed_operation_exits_1_whichever_path_reports_it(tmp_path, monkeypatch, capsys):
    error = AitkError("Could not read the app: Azure answered 500.")
    assert failed_event(error).config_error is False
    assert _raised_to_main(monkeypatch, tmp_path, error) == 1


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("endpoint", "trusted"), [
    ("https://127.0.0.1:8443", "/state/tls/ca.pem"),  # the local cloud's own app: its CA
    ("https://chat.example.com", True),  # any other host: the system's trust store, never the private CA
])
def test_chat_trusts_what_the_tui_trusts(endpoint, trusted, tmp_path, monkeypatch, capsys):
    """``aitk chat --local --endpoint URL`` with the user's own key: the TLS trust for URL is
    ``CloudEndpoints.trust_for`` (the TUI's answer), not the local CA for every host."""
    import aitk_tui.backend
    import aitk_tui.chat.client

    local = CloudEndpoints("local", arm_url="https://127.0.0.1:1", ca_bundle="/state/tls/ca.pem")

    class Session:
        endpoints = local
        prompt_sink = None

        async def close(self):
            pass

    async def open_session(project, **kwargs):
        return Session()

    seen = []

    class Client:
        def __init__(self, url, key, *, verify=True, **kwargs):
            seen.append(verify)
            raise _Stop

    monkeypatch.setattr(aitk_tui.backend, "open_session", open_session)
    monkeypatch.setattr(aitk_tui.chat.client, "ChatClient", Client)
    monkeypatch.setenv("AITK_API_KEY", "the-users-own-key-0123456789")
    assert main(["--project", str(tmp_path), "chat", "hi", "--local", "--endpoint", endpoint]) == 1
    assert seen == [trusted]
