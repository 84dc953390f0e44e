"""Deploy on the local cloud: incremental sync semantics, interruptions, storage faults,
the health wait's clear failure, and the replica log stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aitk_tui.cloud import deploy as deploy_mod
from aitk_tui.cloud.sync_plan import format_size
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.events import Done, Failed, HealthWait, LogLine, UploadProgress
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB

from tests.backend.deploy_helpers import deploy_all, provisioned, share_dir

pytestmark = pytest.mark.timeout(90)




def _local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "inference_server").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name != ".DS_Store"}


def _add_files(root: Path, n: int) -> None:
    extra = root / "inference_server" / "extra"
    for i in range(n):
        (extra / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (extra / f"d{i % 4}" / f"f{i}.txt").write_text(f"file {i}\n" * 200)


async def test_sync_is_incremental_and_mirrors_the_folder(session, local_cloud, local_project):
    root = Path(local_project)
    (root / "inference_server" / "__pycache__").mkdir(exist_ok=True)
    (root / "inference_server" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "inference_server" / ".DS_Store").write_bytes(b"\0")
    config = await provisioned(session)
    events = await deploy_all(session, config)
    local = _local_files(root)
    n, size = len(local), sum(len(b) for b in local.values())
    assert events[-1].summary == (f"uploaded {n} files ({format_size(size)}), 0 unchanged, 0 removed, 2 skipped")
    assert events[-1].result.skipped == ("inference_server/__pycache__/", "inference_server/.DS_Store")
    ups = [e for e in events if isinstance(e, UploadProgress)]
    assert [e.files_done for e in ups] == list(range(1, n + 1)) and ups[-1].bytes_done == size
    share = share_dir(local_cloud, config)
    assert {k: (share / k).read_bytes() for k in local} == local
    assert not (share / "inference_server" / "__pycache__").exists()
    assert not (share / "inference_server" / ".DS_Store").exists()
    manifest = json.loads((share / ".aitk" / "manifest.json").read_text())
    assert set(manifest["files"]) == set(local)

    again = (await deploy_all(session, config))[-1].summary
    assert again == f"uploaded 0 files (0 B), {n} unchanged, 0 removed, 2 skipped"


async def test_interrupted_first_deploy_uploads_everything_next_time(session, local_project):
    root = Path(local_project)
    _add_files(root, 60)
    config = await provisioned(session)
    gen = session.deploy(config, restart=False)
    async for event in gen:
        if isinstance(event, UploadProgress):
            break
    await gen.aclose()
    n = len(_local_files(root))
    events = await deploy_all(session, config)
    assert events[-1].summary.startswith(f"uploaded {n} files")  # no manifest was written: all again


async def test_failed_upload_is_retried_even_if_the_file_is_reverted(session, local_project, monkeypatch):
    root = Path(local_project)
    config = await provisioned(session)
    await deploy_all(session, config)
    target = root / "inference_server" / "__init__.py"
    original = target.read_text()
    target.write_text(original + "\n# new\n")
    real = deploy_mod._upload_one

    def flaky(share, f):
        if f.rel == "inference_server/__init__.py":
            raise OSError(5, "Input/output error")
        return real(share, f)

    monkeypatch.setattr(deploy_mod, "_upload_one", flaky)
    events = await deploy_all(session, config)
    assert isinstance(events[-1], Failed)
    assert events[-1].message == (f"Could not upload inference_server/__init__.py to file share "
                                  f"{config.FILE_SHARE_NAME}: Input/output error.")
    monkeypatch.setattr(deploy_mod, "_upload_one", real)
    target.write_text(original)  # back to what the share's old manifest says...
    events = await deploy_all(session, config)
    assert events[-1].summary.startswith("uploaded 1 file (")  # ...but the share may hold a partial file


async def test_corrupt_manifest_means_upload_all(session, local_cloud, local_project):
    config = await provisioned(session)
    await deploy_all(session, config)
    (share_dir(local_cloud, config) / ".aitk" / "manifest.json").write_text("{ not json")
    n = len(_local_files(Path(local_project)))
    assert (await deploy_all(session, config))[-1].summary.startswith(f"uploaded {n} files")


async def test_sync_survives_storage_throttling_5xx_and_drops(session, local_cloud, local_project):
    root = Path(local_project)
    _add_files(root, 12)
    config = await provisioned(session)
    # Azure Files throttles with 503 ServerBusy (not 429), which the storage SDK retries.
    local_cloud.inject("throttle", count=3, path_contains="/inference_server/", retry_after=0, status=503)
    local_cloud.inject("server_error", count=2, path_contains="/inference_server/", status=503)
    local_cloud.inject("drop_connection", count=2, path_contains="/inference_server/")
    local_cloud.inject("server_error", count=1, path_contains="manifest.json", status=500)
    events = await deploy_all(session, config)
    assert isinstance(events[-1], Done), events[-1]
    assert local_cloud.faults.list() == []
    local = _local_files(root)
    share = share_dir(local_cloud, config)
    assert {k: (share / k).read_bytes() for k in local} == local


async def test_storage_key_comes_from_list_keys_and_is_a_secret(session, local_cloud):
    from aitk_tui.errors import redact

    config = await provisioned(session)
    key = await session.storage_key(SUB, "rg-demo", config.STORAGE_ACCOUNT_NAME)
    assert redact(f"key={key}") == "key=***"


async def test_unhealthy_endpoint_times_out_with_a_clear_failure(session, local_project):
    root = Path(local_project)
    (root / "inference_server" / "__main__.py").write_text("import time\ntime.sleep(600)\n")  # never serves
    config = await provisioned(session)
    events = await deploy_all(session, config, restart=True, wait=True, health_timeout_s=1.5)
    waits = [e for e in events if isinstance(e, HealthWait)]
    assert waits and all(w.status != "ok" for w in waits)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.message.startswith("The endpoint did not become healthy within 2 s (last: unreachable)")
    assert "aitk logs" in failed.detail and "cold start" in failed.detail


async def test_replica_logs_stream_and_stop_cleanly(session):
    config = await provisioned(session)
    gen = session.replica_logs(config, follow=True, tail_lines=50)
    first = await asyncio.wait_for(gen.__anext__(), timeout=20)
    assert isinstance(first, LogLine) and first.text
    await asyncio.wait_for(gen.aclose(), timeout=5)
    lines = [e async for e in session.replica_logs(config, follow=False, tail_lines=5)]
    assert 1 <= len(lines) <= 5 and all(isinstance(e, LogLine) for e in lines)


async def test_missing_config_keys_fail_without_touching_the_cloud(session):
    events = [e async for e in session.deploy(InferenceConfig(SUBSCRIPTION_ID=SUB))]
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].message.startswith("inference.config.json is missing RESOURCE_GROUP_NAME")


async def test_manifest_entries_with_dot_dot_or_backslash_are_ignored_with_a_warning(session, local_cloud):
    """A manifest on the share listing 'inference_server/../x' made every later deploy fail (it
    tried to delete that path): such entries are dropped on read, said once, and the manifest is
    written back without them."""
    from aitk_tui.events import Info

    config = await provisioned(session)
    await deploy_all(session, config)
    path = share_dir(local_cloud, config) / ".aitk" / "manifest.json"
    doc = json.loads(path.read_text())
    bad = ["inference_server/../escape.py", "inference_server\\..\\x.py", "inference_server//a.py",
           "inference_server/./b.py"]
    doc["files"].update({k: {"sha256": "0" * 64, "size": 1} for k in bad})
    path.write_text(json.dumps(doc))

    events = await deploy_all(session, config)
    assert isinstance(events[-1], Done), events[-1]
    warning = next(e for e in events if isinstance(e, Info) and "Ignored 4 entries" in e.message)
    assert warning.level == "warning" and "'inference_server/../escape.py'" in warning.message
    assert not set(bad) & set(json.loads(path.read_text())["files"])
    again = await deploy_all(session, config)
    assert isinstance(again[-1], Done) and not any("Ignored" in getattr(e, "message", "") for e in again)
