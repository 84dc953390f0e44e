"""Back-end pieces that need no cloud: sign-in plumbing, who-am-I, error sentences, the
sync plan, and how the CLI prints progress."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from aitk_tui.cli._printer import EventPrinter
from aitk_tui.cloud import auth
from aitk_tui.cloud.deploy import SyncResult, plan_sync
from aitk_tui.cloud.sdkerrors import NOT_SIGNED_IN, describe
from aitk_tui.cloud.session import CloudSession
from aitk_tui.cloud.sync_plan import scan
from aitk_tui.endpoints import CloudEndpoints
from aitk_tui.errors import AitkError, redact
from aitk_tui.events import Done, Failed, HealthWait, Info, UploadProgress
from aitk_tui.project import Project


def _jwt(claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'none'})}.{enc(claims)}.c2lnbmF0dXJl"


# -- who am I --------------------------------------------------------------------------------
def test_identity_from_token_claims():
    ident = auth.identity_from_token(_jwt({"name": "Ada Lovelace", "upn": "ada@contoso.com", "tid": "t-1",
                                           "oid": "o-1"}), "cli")
    assert ident.display_name == "Ada Lovelace (ada@contoso.com)"
    assert ident.tenant_id == "t-1" and ident.method == "cli"
    sp = auth.identity_from_token(_jwt({"appid": "app-123", "tid": "t"}), "env")
    assert sp.display_name == "app-123"
    assert auth.identity_from_token("not-a-jwt", "local").display_name == "local user"
    assert auth.decode_claims("a.!!!.c") == {}


class _Cred:
    def __init__(self, token: str, fail: Exception | None = None, prompt=None, delay: float = 0.0):
        self.token, self.fail, self.prompt, self.delay, self.calls = token, fail, prompt, delay, []

    def get_token(self, *scopes, **kw):
        self.calls.append((scopes, kw))
        if self.prompt:
            self.prompt("To sign in, open https://microsoft.com/devicelogin and enter the code ABCD-1234.")
            time.sleep(self.delay)
        if self.fail:
            raise self.fail
        return AccessToken(self.token, int(time.time()) + 3600)


async def test_sign_in_yields_device_code_instructions_then_identity(tmp_path):
    token = _jwt({"name": "Dev Box", "tid": "tenant"})
    session = CloudSession(Project(tmp_path), CloudEndpoints("azure"), None, method="device-code")
    session.credential = _Cred(token, prompt=session.on_device_code, delay=0.2)
    events = [e async for e in session.sign_in()]
    assert isinstance(events[0], Info) and "ABCD-1234" in events[0].message
    assert isinstance(events[-1], Done) and events[-1].result.identity.display_name == "Dev Box"
    assert redact(f"leak {token}") == "leak ***"  # the token was registered as a secret


async def test_failed_sign_in_is_one_clear_sentence(tmp_path):
    from azure.identity import CredentialUnavailableError

    session = CloudSession(Project(tmp_path), CloudEndpoints("azure"), None, method="auto")
    session.credential = _Cred("x", fail=CredentialUnavailableError("Please run 'az login' to set up an account"))
    events = [e async for e in session.sign_in()]
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].message == NOT_SIGNED_IN
    assert "az login" in events[0].detail


def test_make_credential_choices():
    from azure.identity import AzureCliCredential, DefaultAzureCredential, DeviceCodeCredential

    assert isinstance(auth.make_credential("cli"), AzureCliCredential)
    assert isinstance(auth.make_credential("device-code"), DeviceCodeCredential)
    default = auth.make_credential("auto")
    assert isinstance(default, DefaultAzureCredential)
    names = [type(c).__name__ for c in default.credentials]
    assert "ManagedIdentityCredential" not in names and "InteractiveBrowserCredential" not in names
    with pytest.raises(AitkError):
        auth.make_credential("password")


def test_cached_credential_shares_tokens_and_passes_claims_through():
    inner = _Cred(_jwt({"name": "x"}))
    cached = auth.CachedCredential(inner)
    a = cached.get_token("scope/.default", enable_cae=True)
    b = cached.get_token("scope/.default", enable_cae=True)
    assert a is b and len(inner.calls) == 1
    cached.get_token("scope/.default", claims='{"access_token":{}}', enable_cae=True)
    assert len(inner.calls) == 2 and inner.calls[1][1]["claims"] == '{"access_token":{}}'


# -- error sentences ---------------------------------------------------------------------------
def test_describe_sdk_errors_never_leaks_a_secret():
    secret = "Zm9vYmFyYmF6cXV4c2VjcmV0a2V5MTIzNDU2Nzg5MA=="
    from aitk_tui.errors import register_secret

    register_secret(secret)
    e = describe(ClientAuthenticationError(f"token {secret} expired"), "list subscriptions")
    assert e.message == NOT_SIGNED_IN and secret not in str(e)
    e = describe(ServiceRequestError("Connection reset by peer"), "list subscriptions")
    assert e.message.startswith("Could not list subscriptions: the connection to Azure failed")
    e = describe(HttpResponseError(message=f"Operation returned an invalid status 'Conflict' {secret}"), "do x")
    assert e.message.startswith("Could not do x") and secret not in (e.detail or "")
    e = describe(ValueError("boom"), "do y")
    assert e.message == "Could not do y." and "ValueError" in e.detail


# -- sync plan ----------------------------------------------------------------------------------
def _tree(root: Path) -> None:
    srv = root / "inference_server"
    (srv / "pkg" / "__pycache__").mkdir(parents=True)
    (srv / "app.py").write_text("print('hi')\n")
    (srv / "pkg" / "mod.py").write_text("x = 1\n")
    (srv / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (srv / "stale.pyc").write_bytes(b"\0")
    (srv / ".DS_Store").write_bytes(b"\0")


def test_scan_skips_caches_and_uses_share_paths(tmp_path):
    _tree(tmp_path)
    files = scan(tmp_path)
    assert sorted(files) == ["inference_server/app.py", "inference_server/pkg/mod.py"]
    assert files["inference_server/app.py"].size == len("print('hi')\n")


def test_plan_sync_uploads_changed_and_removes_deleted(tmp_path):
    _tree(tmp_path)
    local = scan(tmp_path)
    assert len(plan_sync(local, None).upload) == 2  # no manifest: everything
    manifest = {k: {"sha256": f.sha256, "size": f.size} for k, f in local.items()}
    manifest["inference_server/gone.py"] = {"sha256": "0", "size": 1}
    manifest["model-cache/keep.bin"] = {"sha256": "0", "size": 1}  # outside the synced folder
    (tmp_path / "inference_server" / "app.py").write_text("print('changed')\n")
    plan = plan_sync(scan(tmp_path), manifest)
    assert [f.rel for f in plan.upload] == ["inference_server/app.py"]
    assert plan.unchanged == 1 and plan.remove == ["inference_server/gone.py"]


def test_summary_wording():
    assert SyncResult(3, 1200, 7, 1).summary == "uploaded 3 files (1.2 KB), 7 unchanged, 1 removed"
    assert SyncResult(1, 1, 0, 0).summary == "uploaded 1 file (1 B), 0 unchanged, 0 removed"
    assert SyncResult(0, 0, 2, 0).summary == "uploaded 0 files (0 B), 2 unchanged, 0 removed"
    assert SyncResult(2, 25 * 1024 * 1024, 0, 0).summary == "uploaded 2 files (25.0 MB), 0 unchanged, 0 removed"


# -- CLI progress printing ---------------------------------------------------------------------
def test_upload_progress_does_not_flood():
    err = io.StringIO()
    p = EventPrinter(err=err, out=io.StringIO())
    for i in range(1, 501):
        p(UploadProgress(f"f{i}", i, 500, i * 10, 5000))
    lines = err.getvalue().splitlines()
    assert 5 <= len(lines) <= 12 and lines[-1].startswith("  uploaded 500/500 files")


def test_health_waits_print_on_change_only():
    err = io.StringIO()
    p = EventPrinter(err=err, out=io.StringIO())
    for i in range(25):
        p(HealthWait("loading", i * 0.5))
    p(HealthWait("ok", 12.5))
    assert len(err.getvalue().splitlines()) == 3  # first, after 10 s, ok


def test_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    import aitk_tui.cli.provision as cli_provision
    from aitk_tui.cli import main

    def interrupted(project, args):
        args.operation_sent = True  # the deployment was submitted (before that, no hint: nothing goes on)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_provision, "run", interrupted)
    (tmp_path / "infra" / "provision").mkdir(parents=True)
    rc = main(["--project", str(tmp_path), "provision", "--local", "--yes"])
    out, err = capsys.readouterr()
    assert rc == 130 and out == ""
    assert err.startswith("aitk: interrupted (a submitted deployment continues in Azure")
    assert err.count("\n") == 1


def test_unexpected_exception_is_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    import aitk_tui.cli.status as cli_status
    from aitk_tui.cli import main

    def boom(project, args):
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli_status, "run", boom)
    monkeypatch.delenv("AITK_DEBUG", raising=False)
    assert main(["--project", str(tmp_path), "status"]) == 1
    err = capsys.readouterr().err
    assert err == "aitk: error: Something unexpected went wrong. (RuntimeError: kaput)\n"


def test_init_writes_a_project(tmp_path, capsys):
    from aitk_tui.cli import main

    assert main(["init", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Project ready in {tmp_path / 'new'}: wrote ")
    assert (tmp_path / "new" / "infra" / "provision" / "inference.parameters.json").is_file()
    assert (tmp_path / "new" / "inference_server").is_dir()


def test_hash_cache_skips_rehashing_unchanged_files(tmp_path, monkeypatch):
    import os

    from aitk_tui.cloud import sync_plan as d

    _tree(tmp_path)
    cache: dict = {}
    first = scan(tmp_path, hash_cache=cache)
    assert set(cache) == set(first)
    calls = []
    real = d._sha256
    monkeypatch.setattr(d, "_sha256", lambda p: calls.append(p.name) or real(p))
    assert scan(tmp_path, hash_cache=cache) == first and calls == []
    app = tmp_path / "inference_server" / "app.py"
    app.write_text("print('HI')\n")  # same size, new content and mtime
    st = app.stat()
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = scan(tmp_path, hash_cache=cache)
    assert calls == ["app.py"] and again["inference_server/app.py"].sha256 != first["inference_server/app.py"].sha256
