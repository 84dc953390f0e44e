"""Real azure-identity code paths without Azure: a stand-in ``az`` on PATH, as in
azure-sdk-offline.md. Who-am-I reads the token's claims; the token is never printed."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

from aitk_tui.cli import main


def _jwt(claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'RS256', 'typ': 'JWT'})}.{enc(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


def _fake_az(bin_dir: Path, token: str) -> None:
    bin_dir.mkdir()
    expires = int(time.time()) + 3600
    payload = json.dumps({"accessToken": token, "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000",
                                                                          time.localtime(expires)),
                          "expires_on": expires, "subscription": "sub", "tenant": "tid-123", "tokenType": "Bearer"})
    script = bin_dir / "az"
    script.write_text(f"#!/bin/sh\ncat <<'JSON'\n{payload}\nJSON\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_whoami_with_azure_cli_credential(tmp_path, monkeypatch, capsys):
    token = _jwt({"name": "Ada Lovelace", "upn": "ada@contoso.com", "tid": "tid-123", "oid": "o"})
    _fake_az(tmp_path / "bin", token)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    rc = main(["--project", str(tmp_path), "--auth", "cli", "whoami", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out) == {"display_name": "Ada Lovelace (ada@contoso.com)", "tenant_id": "tid-123",
                               "method": "cli"}
    assert token not in out + err and token.split(".")[1] not in out + err


def test_not_signed_in_is_one_line_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no az anywhere
    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(var, raising=False)
    for method, advice in (("cli", "Not signed in to the Azure CLI: run `az login`, or use `--device-code`"),
                           ("env", "No service principal in the environment: set AZURE_TENANT_ID")):
        rc = main(["--project", str(tmp_path), "--auth", method, "subscriptions"])
        out, err = capsys.readouterr()
        assert rc == 2 and out == ""  # configuration, not a failed operation
        assert err.startswith(f"aitk: error: {advice}"), err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_device_code_without_network_says_so_and_does_not_advise_device_code(tmp_path, monkeypatch, capsys):
    import socket

    def no_network(*a, **k):  # what a box with no network (or no DNS) answers
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    rc = main(["--project", str(tmp_path), "--device-code", "subscriptions"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.startswith("aitk: error: Cannot reach Azure's sign-in service: check the network connection"), err
    assert "device-code" not in err.split("(")[0] and err.count("\n") == 1
