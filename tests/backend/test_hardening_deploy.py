"""Deploy uploads only what it should (issue 12, items 1-4; issue 10's deploy wording).

Every test deploys to the real local cloud through the real SDK and then looks at the
share's folder on disk: what a replica would see at /mount.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.events import Done, Failed, Info, UploadProgress

from tests.backend.deploy_helpers import deploy_all, provisioned, share_dir

pytestmark = pytest.mark.timeout(90)




def _on_share(share: Path) -> set[str]:
    return {p.relative_to(share).as_posix() for p in share.rglob("*") if p.is_file()}


# -- 1. links out of the folder ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "folder"])
async def test_a_link_out_of_the_folder_stops_the_deploy_before_any_upload(session, local_cloud, local_project,
                                                                          tmp_path, kind):
    root = Path(local_project)
    secret_dir = tmp_path / "home" / ".ssh"
    secret_dir.mkdir(parents=True)
    (secret_dir / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY----- not for the share\n")
    link = root / "inference_server" / "notes"
    link.symlink_to(secret_dir / "id_rsa" if kind == "file" else secret_dir)
    config = await provisioned(session)
    events = await deploy_all(session, config)
    failed = events[-1]
    assert isinstance(failed, Failed), events
    assert "inference_server/notes is a link to" in failed.message and "outside inference_server/" in failed.message
    assert "nothing was uploaded" in failed.detail
    assert not [e for e in events if isinstance(e, UploadProgress)]
    assert _on_share(share_dir(local_cloud, config)) == set()  # not even a manifest


async def test_links_inside_the_folder_upload_their_target_and_broken_ones_are_reported(session, local_cloud,
                                                                                       local_project):
    root = Path(local_project)
    server = root / "inference_server"
    (server / "alias.py").symlink_to(server / "settings.py")
    (server / "same").symlink_to(server)  # a loop if it were followed
    (server / "dangling.txt").symlink_to(server / "nowhere")
    config = await provisioned(session)
    events = await deploy_all(session, config)
    assert isinstance(events[-1], Done), events[-1]
    share = share_dir(local_cloud, config)
    assert (share / "inference_server/alias.py").read_bytes() == (server / "settings.py").read_bytes()
    assert not (share / "inference_server/same").exists() and not (share / "inference_server/dangling.txt").exists()
    skipped = " ".join(e.message for e in events if isinstance(e, Info) and e.message.startswith("Skipped"))
    assert "inference_server/same/ (link to a folder)" in skipped
    assert "inference_server/dangling.txt (broken link)" in skipped


# -- 2. ignore list, .aitkignore, large files ---------------------------------------------------
def _junk(server: Path) -> None:
    for rel in (".git/config", ".git/objects/ab/cdef", ".env", ".env.production", "tls/server.key", "cert.pem",
                ".venv/lib/site.py", "venv/bin/activate", ".idea/workspace.xml", ".vscode/settings.json",
                "node_modules/x/index.js", ".mypy_cache/3.11/x.json", ".pytest_cache/v/cache", "sub/__pycache__/m.pyc",
                ".DS_Store", "data/train.jsonl", "keep.pem"):
        path = server / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"junk {rel}\n")
    # gitignore syntax: a folder of the user's, and a default re-included with "!"
    (server / ".aitkignore").write_text("# mine\ndata/\n!keep.pem\n")


async def test_junk_and_secrets_are_skipped_and_listed(session, local_cloud, local_project):
    root = Path(local_project)
    server = root / "inference_server"
    _junk(server)
    (server / "stray.bin").write_bytes(os.urandom(300_000))
    config = await provisioned(session)
    events = await deploy_all(session, config, warn_bytes=200_000)
    done = events[-1]
    assert isinstance(done, Done), done
    on_share = {p.removeprefix("inference_server/") for p in _on_share(share_dir(local_cloud, config))
                if p.startswith("inference_server/")}
    assert {"keep.pem", "stray.bin", ".aitkignore", "app.py"} <= on_share
    leaked = {p for p in on_share if p.startswith((".git", ".env", ".venv", "venv/", ".idea", ".vscode", "node_modules",
                                                   ".mypy", ".pytest", "data/", "tls/", "cert.pem", ".DS_Store"))
              or "__pycache__" in p}
    assert leaked == set()
    skipped = set(done.result.skipped)
    assert {"inference_server/.git/", "inference_server/.env", "inference_server/.env.production",
            "inference_server/.venv/", "inference_server/data/", "inference_server/tls/server.key",
            "inference_server/sub/__pycache__/", "inference_server/cert.pem"} <= skipped
    assert "inference_server/keep.pem" not in skipped
    assert done.summary.endswith(f", {len(skipped)} skipped")
    warnings = [e.message for e in events if isinstance(e, Info) and e.level == "warning"]
    assert warnings == ["inference_server/stray.bin is 293.0 KB: large files slow every cold start; add it to "
                        "inference_server/.aitkignore if the server does not need it."]


async def test_a_file_uploaded_before_it_was_ignored_is_removed_from_the_share(session, local_cloud, local_project):
    root = Path(local_project)
    config = await provisioned(session)
    await deploy_all(session, config)
    share = share_dir(local_cloud, config)
    # as an older aitk would have left it: .env on the share and in the manifest
    (share / "inference_server/.env").write_text("SECRET=1\n")
    manifest = json.loads((share / ".aitk/manifest.json").read_text())
    manifest["files"]["inference_server/.env"] = {"sha256": "0" * 64, "size": 9}
    (share / ".aitk/manifest.json").write_text(json.dumps(manifest))
    (root / "inference_server/.env").write_text("SECRET=1\n")
    events = await deploy_all(session, config)
    assert ", 1 removed, 1 skipped" in events[-1].summary
    assert not (share / "inference_server/.env").exists()


def test_cli_deploy_prints_what_was_skipped_and_the_large_file_warning(cli_cloud, local_project, capsys):
    root = Path(local_project)
    assert main(["--project", str(root), "groups", "create", "rg-demo", "--location", "eastus", "--local"]) == 0
    assert main(["--project", str(root), "provision", "--local", "--yes", "--resource-group", "rg-demo"]) == 0
    (root / "inference_server" / ".env").write_text("OPENAI_API_KEY=sk-not-for-the-share\n")
    (root / "inference_server" / "big.bin").write_bytes(b"\0" * 1_100_000)
    capsys.readouterr()
    assert main(["--project", str(root), "deploy", "--local", "--no-restart", "--warn-size", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(", 0 unchanged, 0 removed, 1 skipped")
    assert "Skipped 1 item (not uploaded): inference_server/.env (ignored)." in err
    assert "warning: inference_server/big.bin is 1.0 MB: large files slow every cold start" in err
    assert "uploaded 1 file (" not in err and "bytes" not in err  # one unit style: "12.3 KB of 1.2 MB"


def test_cli_deploy_refuses_a_negative_or_nan_warn_size(local_project, capsys):
    for value in ("-1", "nan"):
        assert main(["--project", str(local_project), "deploy", "--warn-size", value]) == 2
        assert "--warn-size must be a size in MB" in capsys.readouterr().err


# -- 3. names Azure Files refuses ---------------------------------------------------------------
@pytest.mark.parametrize("name, why", [
    ("bad:name.py", "the character ':' is not allowed in a name"),
    ("what?.txt", "the character '?' is not allowed in a name"),
    ("trailing.", "a name may not end with a dot or a space"),
    ("tab\there", "the control character '\\t' is not allowed in a name"),
    ("/".join(["d" * 240] * 8) + "/" + "f" * 120,  # Linux allows 4096 bytes; Azure Files 2048 characters
     f"a path may be at most 2048 characters (this one has {len('inference_server/sub/') + 8 * 241 + 120})"),
])
async def test_a_name_azure_files_refuses_stops_the_deploy_naming_the_file(session, local_cloud, local_project,
                                                                          name, why):
    root = Path(local_project)
    folder = root / "inference_server" / "sub"
    (folder / name).parent.mkdir(parents=True)
    (folder / name).write_text("x\n")
    config = await provisioned(session)
    events = await deploy_all(session, config)
    failed = events[-1]
    assert isinstance(failed, Failed), events
    assert failed.message == f"{'inference_server/sub/' + name!r} cannot be stored on Azure Files: {why}."
    assert _on_share(share_dir(local_cloud, config)) == set()


async def test_names_that_differ_only_in_case_stop_the_deploy(session, local_project):
    server = Path(local_project) / "inference_server"
    (server / "Model.py").write_text("a\n")
    (server / "model.py").write_text("b\n")
    config = await provisioned(session)
    failed = (await deploy_all(session, config))[-1]
    assert isinstance(failed, Failed)
    assert failed.message == ("'inference_server/Model.py' and 'inference_server/model.py' differ only in case; "
                              "Azure Files would store them as one.")


# -- 4. a killed deploy leaves nothing behind for good ------------------------------------------
async def test_files_of_a_killed_deploy_are_removed_once_deleted_locally(session, local_cloud, local_project):
    root = Path(local_project)
    config = await provisioned(session)
    await deploy_all(session, config)  # a complete deploy: the share has a manifest
    extra = root / "inference_server" / "extra"
    extra.mkdir()
    for i in range(80):
        (extra / f"f{i}.txt").write_text(f"file {i}\n" * 100)
    gen = session.deploy(config, restart=False, workers=2)
    async for event in gen:
        if isinstance(event, UploadProgress) and event.files_done >= 3:
            break
    await gen.aclose()  # killed mid-upload
    share = share_dir(local_cloud, config)
    uploaded = {p for p in _on_share(share) if p.startswith("inference_server/extra/")}
    assert 3 <= len(uploaded) < 80
    for f in extra.iterdir():
        f.unlink()
    extra.rmdir()
    events = await deploy_all(session, config)
    assert isinstance(events[-1], Done), events[-1]
    assert {p for p in _on_share(share) if p.startswith("inference_server/extra/")} == set()
    assert events[-1].summary.startswith("uploaded 0 files (0 B), ") and " 0 removed" not in events[-1].summary
    manifest = json.loads((share / ".aitk/manifest.json").read_text())["files"]
    assert not [k for k in manifest if k.startswith("inference_server/extra/")]
    assert all("sha256" in v for v in manifest.values())


async def test_a_deploy_killed_before_its_first_manifest_is_cleaned_up_too(session, local_cloud, local_project):
    root = Path(local_project)
    extra = root / "inference_server" / "extra"
    extra.mkdir()
    for i in range(60):
        (extra / f"f{i}.txt").write_text(f"file {i}\n" * 100)
    config = await provisioned(session)
    gen = session.deploy(config, restart=False, workers=2)
    async for event in gen:
        if isinstance(event, UploadProgress):
            break
    await gen.aclose()
    for f in extra.iterdir():
        f.unlink()
    events = await deploy_all(session, config)
    assert isinstance(events[-1], Done)
    assert {p for p in _on_share(share_dir(local_cloud, config)) if p.startswith("inference_server/extra/")} == set()


# -- issue 10: an unchanged deploy does not restart the replica ---------------------------------
async def test_a_deploy_with_nothing_changed_does_not_restart_unless_asked(session, local_project):
    config = await provisioned(session)
    first = await deploy_all(session, config, restart=True, wait=False)
    assert first[-1].result.restarted is True
    again = await deploy_all(session, config, restart=True, wait=False)
    assert again[-1].result.restarted is False and again[-1].result.revision is None
    assert not [e for e in again if isinstance(e, Info) and e.message.startswith("Restarted revision")]
    assert again[-1].summary.endswith(" 0 removed; nothing changed, so the replica was not restarted")
    assert "Nothing changed on the share: the replica was not restarted (`aitk deploy --restart` restarts it " \
        "anyway)." in [e.message for e in again if isinstance(e, Info)]
    forced = await deploy_all(session, config, restart=True, wait=False, force_restart=True)
    assert forced[-1].result.restarted is True
    assert [e for e in forced if isinstance(e, Info) and e.message.startswith("Restarted revision")]


async def test_files_of_a_failed_deploy_are_removed_once_deleted_locally(session, local_cloud, local_project,
                                                                        monkeypatch):
    from aitk_tui.cloud import deploy as deploy_mod

    root = Path(local_project)
    config = await provisioned(session)
    await deploy_all(session, config)
    extra = root / "inference_server" / "extra"
    extra.mkdir()
    for i in range(6):
        (extra / f"f{i}.txt").write_text("x" * (1000 * (6 - i)))  # uploaded biggest first: f0, f1, ...
    real = deploy_mod._upload_one

    def failing(share, f):
        if f.rel.endswith("/f3.txt"):
            raise OSError(28, "No space left on device")
        return real(share, f)

    monkeypatch.setattr(deploy_mod, "_upload_one", failing)
    events = await deploy_all(session, config, workers=1)
    assert isinstance(events[-1], Failed)
    share = share_dir(local_cloud, config)
    assert {p for p in _on_share(share) if "/extra/" in p} == {f"inference_server/extra/f{i}.txt" for i in range(3)}
    monkeypatch.setattr(deploy_mod, "_upload_one", real)
    for f in extra.iterdir():
        f.unlink()
    events = await deploy_all(session, config)
    assert ", 3 removed" in events[-1].summary  # the three that reached the share (the others never did)
    assert {p for p in _on_share(share) if "/extra/" in p} == set()


async def test_a_name_the_share_refuses_fails_naming_the_file(session, local_cloud, local_project, monkeypatch):
    """Were the local check ever to miss a rule, the share's 400 still names the file."""
    from aitk_tui.cloud import sync_plan

    monkeypatch.setattr(sync_plan, "component_problem", lambda name: None)
    (Path(local_project) / "inference_server" / "a|b.py").write_text("x\n")
    config = await provisioned(session)
    failed = (await deploy_all(session, config, workers=1))[-1]
    assert isinstance(failed, Failed)
    assert failed.message.startswith("Could not upload inference_server/a|b.py to file share")
    assert "resource name contains invalid characters" in (failed.detail or "")


def test_the_ignore_prefilter_agrees_with_pathspec(tmp_path):
    """The quick "could any pattern match" pass must never hide a match pathspec would find."""
    import pathspec

    from aitk_tui.cloud.sync_plan import DEFAULT_IGNORE, load_ignore

    user = ["data/", "!keep.pem", "/top.txt", "sub/*.bin", "**/cache/**", "*.ckpt", "!important.ckpt", "[ab].log"]
    (tmp_path / ".aitkignore").write_text("\n".join(user) + "\n")
    ours = load_ignore(tmp_path)
    ref = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_IGNORE, *user])
    paths = [".git", ".git/", "a/.git/", "x.pyc", "keep.pem", "a/keep.pem", "cert.pem", "data/", "a/data/", "top.txt",
             "a/top.txt", "sub/x.bin", "a/sub/x.bin", "app.py", "node_modules/", ".env.local", "x/cache/y.py",
             "m.ckpt", "important.ckpt", "a.log", "c.log", "dir.with.dots/f", "ünïcode/.env", "a b/.venv/"]
    assert [p for p in paths if ours.match_file(p)] == [p for p in paths if ref.match_file(p)]


SECRETS = ("id_rsa", "id_rsa.pub", "upper/ID_RSA", "id_ed25519", "keys/id_ed25519_sk", "id_ecdsa", "id_dsa", "me.ppk",
           ".git-credentials", ".npmrc", ".pypirc", ".netrc", "_netrc", ".pgpass", ".aws/credentials", ".aws/config",
           ".azure/msal_token_cache.json", ".azure/accessTokens.json", ".kube/config", ".docker/config.json",
           ".ssh/known_hosts", ".gnupg/private-keys-v1.d/x.key", "gcloud/application_default_credentials.json",
           "SERVER.KEY", "tls/Server.Pem", "cert.P12", "store.pfx", ".ENV", ".Env.Local", "sub/.env.production",
           "terraform.tfstate", "app.keystore", ".htpasswd")


def test_the_default_ignore_list_skips_credential_files_in_any_case(tmp_path):
    """25 of 33 planted secrets were uploaded: each of these is skipped, whatever its case, and
    the server's own files are not."""
    from aitk_tui.cloud.sync_plan import select

    server = tmp_path / "inference_server"
    for rel in (*SECRETS, "app.py", "static/index.html", "config.json", "keyboard.py", "envelope.txt", "aws.py"):
        path = server / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {rel}\n")
    selected = {rel.removeprefix("inference_server/") for rel in select(tmp_path, "inference_server").files}
    assert selected == {"app.py", "static/index.html", "config.json", "keyboard.py", "envelope.txt", "aws.py"}


def test_an_aitkignore_that_is_a_link_is_read_inside_the_folder_and_stops_the_deploy_outside(tmp_path):
    """A linked .aitkignore was silently not read, so everything it kept private was uploaded."""
    from aitk_tui.cloud.sync_plan import select
    from aitk_tui.errors import AitkError

    server = tmp_path / "inference_server"
    (server / "rules").mkdir(parents=True)
    (server / "data").mkdir()
    (server / "data" / "train.jsonl").write_text("private\n")
    (server / "app.py").write_text("x = 1\n")
    (server / "rules" / "ignore.txt").write_text("data/\nrules/\n")
    (server / ".aitkignore").symlink_to(server / "rules" / "ignore.txt")
    selected = set(select(tmp_path, "inference_server").files)
    assert selected == {"inference_server/app.py", "inference_server/.aitkignore"}

    outside = tmp_path / "elsewhere.txt"
    outside.write_text("data/\n")
    for target in (outside, server / "missing.txt"):
        (server / ".aitkignore").unlink()
        (server / ".aitkignore").symlink_to(target)
        with pytest.raises(AitkError) as e:
            select(tmp_path, "inference_server")
        assert "inference_server/.aitkignore is a link to" in e.value.message and str(target) in e.value.message


def test_a_link_into_a_sibling_folder_with_the_same_prefix_stops_the_deploy(tmp_path):
    """inference_server_old/ starts with "inference_server": an "inside the folder" check done as
    a string prefix would upload what the link points at."""
    from aitk_tui.cloud.sync_plan import select
    from aitk_tui.errors import AitkError

    server = tmp_path / "inference_server"
    old = tmp_path / "inference_server_old"
    server.mkdir()
    old.mkdir()
    (old / "secret.txt").write_text("not for the share\n")
    (server / "app.py").write_text("x = 1\n")
    (server / "notes.txt").symlink_to(old / "secret.txt")
    with pytest.raises(AitkError) as e:
        select(tmp_path, "inference_server")
    assert "inference_server/notes.txt is a link to" in e.value.message and "outside inference_server/" in e.value.message


def test_a_file_swapped_for_a_link_after_the_scan_is_not_followed(local_cloud, local_factory, tmp_path):
    """The scan checks every link; a file replaced by a link (to ~/.ssh/...) between the scan
    and its upload must not be followed: O_NOFOLLOW makes the open fail instead."""
    from aitk_tui.cloud.deploy import sync_folder
    from tests.fixtures_local import make_share

    share = make_share(local_factory)
    server = tmp_path / "inference_server"
    server.mkdir()
    (server / "app.py").write_text("x = 1\n")
    (server / "notes.txt").write_text("harmless\n")
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- not for the share\n")

    def swap(plan) -> None:  # after the scan, before any upload
        assert "inference_server/notes.txt" in plan.local
        (server / "notes.txt").unlink()
        (server / "notes.txt").symlink_to(secret)

    from aitk_tui.errors import AitkError

    with pytest.raises(AitkError) as e:
        sync_folder(share, tmp_path, "inference_server", on_plan=swap, workers=1)
    assert "Could not upload inference_server/notes.txt" in e.value.message
    on_share = local_cloud.files_root / "acct1" / "share1"
    leaked = [p for p in on_share.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert leaked == []
