"""The API key goes only where it should (issue 12, items 8 and 9).

Against the real local cloud: the key is the container app's ``inference-api-key``
secret, and the endpoint named by a (possibly changed) ``ACA_APP_ENDPOINT`` is a socket
of this test that records every byte it receives.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

import pytest

from aitk_tui.chat.client import ChatClient, ChatError
from aitk_tui.chat.keys import key_destination_problem
from aitk_tui.cli import main
from aitk_tui.cloud.sdkerrors import InputError
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB

pytestmark = pytest.mark.timeout(90)


class Listener:
    """A TCP port that accepts connections and keeps whatever is sent (plain bytes or TLS hellos)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def _aitk(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--project", str(root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _provision(capsys, root: Path) -> dict:
    assert _aitk(capsys, root, "groups", "create", "rg-demo", "--location", "eastus", "--local")[0] == 0
    rc, out, err = _aitk(capsys, root, "provision", "--local", "--yes", "--resource-group", "rg-demo")
    assert rc == 0, err
    return json.loads((root / "infra/inference.config.json").read_text())


def _set_endpoint(root: Path, endpoint: str) -> None:
    path = root / "infra/inference.config.json"
    config = json.loads(path.read_text())
    config["ACA_APP_ENDPOINT"] = endpoint
    path.write_text(json.dumps(config))


def _app_key(factory, config: dict) -> str:
    secrets = factory.container_apps(SUB).container_apps.list_secrets("rg-demo", config["ACA_APP_NAME"])
    return next(s["value"] for s in secrets["value"] if s["name"] == "inference-api-key")


def test_the_apps_key_is_never_sent_to_a_changed_endpoint(cli_cloud, local_project, local_factory, capsys,
                                                          listener):
    root = Path(local_project)
    config = _provision(capsys, root)
    key = _app_key(local_factory, config)
    # A committed config file edited to point elsewhere: plain http, then https, on another port.
    for endpoint, extra, why in (
            (f"http://127.0.0.1:{listener.port}", (), "is plain http"),
            (f"http://127.0.0.1:{listener.port}", ("--insecure-http",), "sent only to its own endpoint"),
            (f"https://127.0.0.1:{listener.port}", (), "sent only to its own endpoint"),
            (f"127.0.0.1:{listener.port}", (), "sent only to its own endpoint")):
        _set_endpoint(root, endpoint)
        rc, out, err = _aitk(capsys, root, "chat", "hello", "--local", *extra)
        assert rc == 2 and out == "", (endpoint, extra, err)
        assert why in err and err.count("\n") == 1, err
        assert key not in err
    # --endpoint with the app's key: the same rule
    _set_endpoint(root, config["ACA_APP_ENDPOINT"])
    rc, _, err = _aitk(capsys, root, "chat", "hello", "--local", "--endpoint", f"https://localhost:{listener.port}")
    assert rc == 2 and "sent only to its own endpoint" in err
    assert listener.connections == 0 and key.encode() not in listener.received


def test_a_users_key_goes_over_https_only_and_loopback_http_only_when_asked(local_project, capsys, monkeypatch,
                                                                           listener):
    root = Path(local_project)
    monkeypatch.setenv("AITK_API_KEY", "user-key-0123456789")
    rc, _, err = _aitk(capsys, root, "chat", "hi", "--endpoint", "http://203.0.113.5:8000")
    assert rc == 2 and "is plain http: the API key is sent only over https" in err
    rc, _, err = _aitk(capsys, root, "chat", "hi", "--endpoint", f"http://127.0.0.1:{listener.port}")
    assert rc == 2 and "--insecure-http" in err
    assert listener.connections == 0
    # asked explicitly: the key goes to this machine over http (the listener sees the request)
    rc, _, err = _aitk(capsys, root, "chat", "hi", "--endpoint", f"http://127.0.0.1:{listener.port}",
                       "--insecure-http", "--chat-model", "m")
    assert rc == 1 and listener.connections >= 1 and b"Bearer user-key-0123456789" in listener.received
    assert "user-key-0123456789" not in err


async def test_the_session_refuses_the_key_for_another_endpoint(session):
    from aitk_tui.config.parameters import ParametersDocument

    await session.create_resource_group(SUB, "rg-demo", "eastus")
    params = ParametersDocument.load(session.project.parameters_path)
    assert [e async for e in session.provision(SUB, "rg-demo", params)][-1].summary
    config = InferenceConfig.load(session.project.config_path)
    key = await session.api_key(config)  # its own endpoint: fine (the TUI's F9 path)
    assert len(key) >= 32
    changed = config.model_copy(update={"ACA_APP_ENDPOINT": "evil.example.com"})
    with pytest.raises(InputError) as e:
        await session.api_key(changed)
    assert e.value.message.endswith("is sent only to its own endpoint "
                                    f"({config.ACA_APP_ENDPOINT}), not to https://evil.example.com.")
    assert key not in str(e.value)


def test_key_destination_rules():
    assert key_destination_problem("https://app.westus3.azurecontainerapps.io") is None
    assert key_destination_problem("https://APP.example:443/v1", app_fqdn="app.example") is None
    assert key_destination_problem("https://app.example:8443", app_fqdn="app.example") is not None
    assert key_destination_problem("https://app.example.evil.com", app_fqdn="app.example") is not None
    assert key_destination_problem("http://localhost:8000", allow_insecure_http=True) is None
    assert key_destination_problem("http://[::1]:8000", allow_insecure_http=True) is None
    assert key_destination_problem("http://127.0.0.1.nip.io:8000", allow_insecure_http=True) is not None
    assert key_destination_problem("http://10.0.0.5:8000", allow_insecure_http=True) is not None
    assert key_destination_problem("ftp://x.example") is not None
    with pytest.raises(ChatError) as e:
        ChatClient("http://example.com", "k" * 20)
    assert e.value.message == "the API key was not sent to this endpoint"
    ChatClient("http://example.com", None)  # no key: nothing to protect


# -- 9. the key need not be on the command line -----------------------------------------------
def test_api_key_from_stdin_or_env_and_a_literal_one_warns(local_project, capsys, monkeypatch, listener):
    root = Path(local_project)
    url = f"http://127.0.0.1:{listener.port}"
    monkeypatch.setattr("sys.stdin", io.StringIO("stdin-key-0123456789\n"))
    rc, _, err = _aitk(capsys, root, "chat", "hi", "--endpoint", url, "--insecure-http", "--api-key", "-",
                       "--chat-model", "m")
    assert b"Bearer stdin-key-0123456789" in listener.received and "visible to every local user" not in err
    rc, _, err = _aitk(capsys, root, "chat", "hi", "--endpoint", url, "--insecure-http", "--api-key",
                       "literal-key-0123456789", "--chat-model", "m")
    assert err.startswith("warning: an API key on the command line is visible to every local user (ps); "
                          "use $AITK_API_KEY or --api-key - (stdin) instead.\n")
    assert "literal-key-0123456789" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc, _, err = _aitk(capsys, root, "chat", "hi", "--endpoint", url, "--api-key", "-")
    assert rc == 2 and "read no key from stdin" in err


def test_chat_help_says_where_the_key_should_come_from(capsys):
    with pytest.raises(SystemExit):
        from aitk_tui.cli import build_parser

        build_parser().parse_args(["chat", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "$AITK_API_KEY" in out and "--api-key -" in out and "ps" in out and "--insecure-http" in out
