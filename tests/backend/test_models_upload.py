"""``aitk models upload | list`` against the local cloud through the real Files SDK: the copy,
only what changed, resume after an interruption, large files in ranges, the parameters, and
the checks on what the user names."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.cloud.models_upload import UploadRequest, apply_parameters, manifest_path
from aitk_tui.cloud.sdkerrors import InputError
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.config.parameters import ParametersDocument
from aitk_tui.events import Done, Failed, UploadProgress
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import make_share

ACCOUNT, SHARE, GROUP = "acctmodels1", "share1", "rg-models"


@pytest.fixture
def config(local_factory, local_project) -> InferenceConfig:
    """A hand-filled config (manual provisioning) naming a real share on the local cloud,
    which holds the base model where the template's default modelPath finds it (as AI
    Toolkit's fine-tuning leaves it): an adapter alone is served on it."""
    share = make_share(local_factory, ACCOUNT, SHARE, GROUP)
    _put_base(share, DEFAULT_BASE)
    cfg = InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=GROUP, STORAGE_ACCOUNT_NAME=ACCOUNT,
                          FILE_SHARE_NAME=SHARE, ACA_APP_NAME="aiacaappx", ACA_APP_ENDPOINT="127.0.0.1:1")
    cfg.save(Path(local_project) / "infra" / "inference.config.json")
    return cfg


DEFAULT_BASE = "model-cache/microsoft/Phi-3-mini-4k-instruct"  # the template's default modelPath, under /mount


def _put_base(share, folder: str) -> None:
    parts = folder.split("/")
    for i in range(len(parts)):
        try:
            share.create_directory("/".join(parts[: i + 1]))
        except Exception:  # noqa: BLE001 - already there
            pass
    share.get_file_client(f"{folder}/config.json").upload_file(b'{"model_type": "phi3"}')


def _adapter(root: Path, name: str = "adapter", sizes: tuple[int, ...] = (30_000, 20_000, 10_000)) -> Path:
    """An adapter-shaped folder: adapter_config.json plus weight files of the given sizes."""
    d = root / name
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    for i, size in enumerate(sizes):
        (d / f"w{i}.bin").write_bytes(os.urandom(size))
    return d


def _share(local_cloud) -> Path:
    return local_cloud.files_root / ACCOUNT / SHARE


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def _run(session, config, request, **kw) -> list:
    return [e async for e in session.upload_models(config, request, **kw)]


def _sent(events) -> set[str]:
    return {e.path for e in events if isinstance(e, UploadProgress) and not e.partial}


async def test_upload_copies_lists_sets_adapter_path_and_resends_nothing(session, config, local_cloud, tmp_path):
    adapter = _adapter(tmp_path)
    events = await _run(session, config, UploadRequest.checked(adapter))
    assert isinstance(events[-1], Done), events[-1]
    assert _tree(_share(local_cloud) / "models/default/adapter") == _tree(adapter)
    assert _sent(events) == {f"models/default/adapter/{n}" for n in _tree(adapter)}
    doc = ParametersDocument.load(session.project.parameters_path)
    assert doc.get("adapterPath") == "/mount/models/default/adapter"
    assert "adapterPath" in events[-1].summary
    assert any("Parameter adapterPath: null -> /mount/models/default/adapter" in getattr(e, "message", "")
               for e in events)

    listed = await session.list_models(config)
    assert [(m.kind, m.path, m.files, m.bytes) for m in listed] == [
        ("model", DEFAULT_BASE, 1, 22), ("adapter", "models/default/adapter", 4, sum(len(b) for b in _tree(adapter).values()))]
    assert listed[1].modified is not None

    again = await _run(session, config, UploadRequest.checked(adapter))
    assert isinstance(again[-1], Done) and not _sent(again)
    assert again[-1].result.files_uploaded == 0 and again[-1].result.params == ()
    assert again[-1].summary.startswith("Uploaded 0 files")

    (adapter / "w1.bin").write_bytes(b"changed")
    third = await _run(session, config, UploadRequest.checked(adapter))
    assert _sent(third) == {"models/default/adapter/w1.bin"}
    assert _tree(_share(local_cloud) / "models/default/adapter") == _tree(adapter)


async def test_named_adapter_and_base_model_set_adapters_and_model_path(session, config, local_cloud, tmp_path):
    params = session.project.parameters_path
    raw = json.loads(params.read_text())
    raw["parameters"]["adapters"] = {"value": ["chat=/mount/models/chat/adapter", "sql=/mount/old"]}
    raw["x-note"] = "kept"  # a key aitk does not know survives the rewrite
    params.write_text(json.dumps(raw, indent=4) + "\n")
    model = tmp_path / "Tiny-Model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"_name_or_path": "contoso/Tiny-Model", "model_type": "x"}))
    (model / "model.safetensors").write_bytes(os.urandom(5000))
    adapter = _adapter(tmp_path)

    events = await _run(session, config, UploadRequest.checked(adapter, "sql", model))
    assert isinstance(events[-1], Done), events[-1]
    share = _share(local_cloud)
    assert _tree(share / "model-cache/contoso/Tiny-Model") == _tree(model)
    assert _tree(share / "models/sql/adapter") == _tree(adapter)
    after = json.loads(params.read_text())
    # The entry for "sql" replaced in place (the first adapter stays the default model).
    assert after["parameters"]["adapters"]["value"] == ["chat=/mount/models/chat/adapter",
                                                        "sql=/mount/models/sql/adapter"]
    assert after["parameters"]["modelPath"]["value"] == "/mount/model-cache/contoso/Tiny-Model"
    assert after["x-note"] == "kept" and "adapterPath" not in after["parameters"]  # named: the list only
    assert params.read_text().startswith('{\n    "')  # the file's own indentation
    result = events[-1].result
    assert {c.name for c in result.params} == {"adapters", "modelPath"}
    assert [f.kind for f in result.folders] == ["model", "adapter"]

    kinds = {(m.kind, m.path) for m in await session.list_models(config)}
    assert kinds == {("model", "model-cache/contoso/Tiny-Model"), ("model", DEFAULT_BASE), ("adapter", "models/sql/adapter")}


def test_apply_parameters_appends_a_new_name(tmp_path):
    doc = ParametersDocument.new(tmp_path / "p.json", {"adapters": ["a=/mount/models/a/adapter"]})
    d = _adapter(tmp_path)
    changes = apply_parameters(doc, UploadRequest.checked(d, "b"))
    assert doc.get("adapters") == ["a=/mount/models/a/adapter", "b=/mount/models/b/adapter"]
    assert [c.name for c in changes] == ["adapters"]
    assert apply_parameters(doc, UploadRequest.checked(d, "b")) == ()  # already there: nothing changes


def test_a_named_upload_keeps_the_single_adapter_served_before_it(tmp_path):
    """--name adds a model: the adapter the endpoint served alone (adapterPath, as adapterName)
    joins the list first, so it is still served and still the default (it was dropped)."""
    sql = _adapter(tmp_path)
    doc = ParametersDocument.new(tmp_path / "p.json", {"adapterPath": "/mount/models/default/adapter"})
    apply_parameters(doc, UploadRequest.checked(sql, "sql"))
    assert doc.get("adapters") == ["adapter=/mount/models/default/adapter", "sql=/mount/models/sql/adapter"]

    named = ParametersDocument.new(tmp_path / "q.json", {"adapterPath": "/mount/a", "adapterName": "mine"})
    apply_parameters(named, UploadRequest.checked(sql, "sql"))
    assert named.get("adapters") == ["mine=/mount/a", "sql=/mount/models/sql/adapter"]

    fresh = ParametersDocument.new(tmp_path / "r.json", {})  # nothing uploaded yet: nothing to keep
    apply_parameters(fresh, UploadRequest.checked(sql, "sql"))
    assert fresh.get("adapters") == ["sql=/mount/models/sql/adapter"]


async def test_upload_failing_half_way_resumes_with_only_the_rest(session, config, local_cloud, tmp_path):
    adapter = _adapter(tmp_path, sizes=(30_000, 20_000, 10_000))  # sent biggest first: w0, w1, w2, config
    local_cloud.inject("server_error", count=50, path_contains="/models/default/adapter/w1.bin", status=500)
    events = await _run(session, config, UploadRequest.checked(adapter), workers=1)
    assert isinstance(events[-1], Failed), events[-1]
    assert "w1.bin" in events[-1].message
    assert _sent(events) == {"models/default/adapter/w0.bin"}
    assert ParametersDocument.load(session.project.parameters_path).get("adapterPath") is None  # not yet
    manifest = json.loads((_share(local_cloud) / manifest_path("models/default/adapter")).read_text())["files"]
    assert "sha256" in manifest["models/default/adapter/w0.bin"]
    assert manifest["models/default/adapter/w1.bin"] == {"pending": True}

    local_cloud.clear_faults()
    resumed = await _run(session, config, UploadRequest.checked(adapter), workers=1)
    assert isinstance(resumed[-1], Done), resumed[-1]
    assert _sent(resumed) == {f"models/default/adapter/{n}" for n in ("w1.bin", "w2.bin", "adapter_config.json")}
    assert _tree(_share(local_cloud) / "models/default/adapter") == _tree(adapter)


async def test_cancelled_upload_records_what_finished(session, config, local_cloud, tmp_path):
    adapter = _adapter(tmp_path, sizes=(40_000, 30_000, 20_000, 10_000))
    gen = session.upload_models(config, UploadRequest.checked(adapter), workers=1)
    first = []
    async for event in gen:
        if isinstance(event, UploadProgress) and not event.partial:
            first.append(event.path)
            break
    await gen.aclose()  # as Esc / Ctrl-C does
    resumed = await _run(session, config, UploadRequest.checked(adapter), workers=1)
    assert isinstance(resumed[-1], Done)
    assert first[0] not in _sent(resumed) and len(_sent(resumed)) < 5
    assert _tree(_share(local_cloud) / "models/default/adapter") == _tree(adapter)


async def test_large_file_goes_in_ranges_in_parallel_with_byte_progress(session, config, local_cloud, tmp_path,
                                                                        monkeypatch):
    from aitk_tui.cloud import deploy as deploy_mod

    calls = {}
    real = deploy_mod._upload_one

    def spy(share, f, concurrency=1, progress=None):
        calls[f.rel.rsplit("/", 1)[-1]] = concurrency
        return real(share, f, concurrency, progress)

    monkeypatch.setattr(deploy_mod, "_upload_one", spy)
    adapter = _adapter(tmp_path, sizes=(700_000,))
    events = await _run(session, config, UploadRequest.checked(adapter), file_concurrency=4,
                        share_options={"max_range_size": 64 * 1024})
    assert isinstance(events[-1], Done), events[-1]
    assert calls == {"w0.bin": 4, "adapter_config.json": 1}  # one range: no pool of threads for it
    inside = [e for e in events if isinstance(e, UploadProgress) and e.partial]
    assert len(inside) >= 5 and all(e.path.endswith("w0.bin") for e in inside)
    assert all(0 < e.bytes_done < e.bytes_total for e in inside)
    assert _tree(_share(local_cloud) / "models/default/adapter") == _tree(adapter)


@pytest.mark.parametrize("name, why", [("a/b", "not valid"), ("con", "not valid"), ("x:y", "not valid"),
                                       ("", "not valid"), ("n" * 65, "not valid"), ("-x", "not valid")])
def test_bad_adapter_names_are_refused(tmp_path, name, why):
    with pytest.raises(InputError, match=why):
        UploadRequest.checked(_adapter(tmp_path), name)


def test_folders_are_checked(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        UploadRequest.checked(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        UploadRequest.checked(tmp_path / "f")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no adapter_config.json"):
        UploadRequest.checked(tmp_path / "empty")
    with pytest.raises(InputError, match="has no config.json"):
        UploadRequest.checked(_adapter(tmp_path), model=tmp_path / "empty")


async def test_link_out_of_the_adapter_is_refused_and_nothing_sent(session, config, local_cloud, tmp_path):
    adapter = _adapter(tmp_path)
    secret = tmp_path / "id_rsa_copy"
    secret.write_text("secret")
    (adapter / "weights.bin").symlink_to(secret)
    events = await _run(session, config, UploadRequest.checked(adapter))
    assert isinstance(events[-1], Failed)
    assert "weights.bin is a link to" in events[-1].message and "outside" in events[-1].message
    assert not (_share(local_cloud) / "models").exists()


async def test_broken_parameters_file_stops_before_uploading(session, config, local_cloud, tmp_path):
    params = session.project.parameters_path
    params.write_text("{ not json")
    events = await _run(session, config, UploadRequest.checked(_adapter(tmp_path)))
    assert isinstance(events[-1], Failed) and "not valid JSON" in events[-1].message
    assert params.read_text() == "{ not json"
    assert not (_share(local_cloud) / "models").exists()


def test_cli_upload_then_list(cli_cloud, config, local_project, tmp_path, capsys):
    adapter = _adapter(tmp_path)
    rc = main(["--project", str(local_project), "models", "upload", "--local", "--adapter", str(adapter),
               "--name", "sql"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "uploaded 4/4 files" in err and "Parameter adapters:" in err
    assert out.startswith("Uploaded 4 files")
    rc = main(["--project", str(local_project), "models", "list", "--local"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.splitlines()[0].split()[0] == "KIND"
    assert out.splitlines()[1].split()[:3] == ["model", DEFAULT_BASE, "1"]
    assert out.splitlines()[2].split()[:3] == ["adapter", "models/sql/adapter", "4"]
    rc = main(["--project", str(local_project), "models", "list", "--local", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert listed[1]["mount_path"] == "/mount/models/sql/adapter" and listed[1]["files"] == 4


def test_cli_refuses_a_folder_that_is_not_an_adapter(cli_cloud, config, local_project, tmp_path, capsys):
    rc = main(["--project", str(local_project), "models", "upload", "--local", "--adapter", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "is not a LoRA adapter folder: it has no adapter_config.json" in err and "Traceback" not in err


@pytest.mark.timeout(180)
async def test_the_replica_serves_what_was_uploaded(session, local_cloud, tiny_model, tmp_path):
    """Upload the tiny base model and its adapter (named), provision with the parameters the
    upload set, deploy the real server: the local replica loads both from the share."""
    import httpx

    from tests.backend.deploy_helpers import deploy_all, provisioned

    config = await provisioned(session)
    model = tmp_path / "tiny-base"  # the base under a new name: it must come from the share
    import shutil

    shutil.copytree(tiny_model.model_dir, model)
    events = await _run(session, config, UploadRequest.checked(tiny_model.adapter_dir, "mine", model))
    assert isinstance(events[-1], Done), events[-1]
    uploaded = events[-1].result
    assert {c.name for c in uploaded.params} == {"adapters", "modelPath"}
    config = await provisioned(session)  # the parameters the upload set reach the app
    events = await deploy_all(session, config, restart=True, wait=True, health_timeout_s=150)
    assert isinstance(events[-1], Done), events[-1]
    key = await session.api_key(config)
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(local_cloud.ca_bundle))) as client:
        answer = await client.get(f"{config.endpoint_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    ids = [m["id"] for m in answer.json()["data"]]
    assert ids == ["mine"], ids
    base = next(f.dest for f in uploaded.folders if f.kind == "model").rsplit("/", 1)[-1]
    lines = [e.text async for e in session.replica_logs(config, follow=False, tail_lines=300)]
    assert any(f"model loaded: base={base} adapters=mine" in line for line in lines), lines[-20:]


async def test_each_finished_file_is_recorded_before_it_is_reported(session, config, local_cloud, tmp_path):
    """A process killed right after a file's progress event keeps that file: the manifest on the
    share already lists it (checkpoint_s=0: a write per file)."""
    adapter = _adapter(tmp_path, sizes=(20_000, 0, 10_000))  # an empty file too
    seen = 0
    async for event in session.upload_models(config, UploadRequest.checked(adapter), workers=1, checkpoint_s=0):
        if isinstance(event, UploadProgress) and not event.partial:
            manifest = json.loads((_share(local_cloud) / manifest_path("models/default/adapter")).read_text())
            assert "sha256" in manifest["files"][event.path], (event.path, manifest)
            seen += 1
    assert seen == 4
    assert _tree(_share(local_cloud) / "models/default/adapter") == _tree(adapter)


@pytest.mark.parametrize("bad", ["w:1.bin", "trailing.", "con"])
async def test_a_file_name_the_share_refuses_stops_before_anything_is_sent(session, config, local_cloud, tmp_path,
                                                                            bad):
    adapter = _adapter(tmp_path)
    (adapter / bad).write_bytes(b"x")
    events = await _run(session, config, UploadRequest.checked(adapter))
    assert isinstance(events[-1], Failed) and bad in events[-1].message, events[-1]
    assert not (_share(local_cloud) / "models").exists()


async def test_parameters_broken_during_the_upload_are_left_alone_and_reported(session, config, local_cloud,
                                                                               tmp_path):
    params = session.project.parameters_path
    good = params.read_text()
    adapter = _adapter(tmp_path)
    events = []
    async for event in session.upload_models(config, UploadRequest.checked(adapter, "sql")):
        events.append(event)
        if isinstance(event, UploadProgress) and not event.partial and event.files_done == 1:
            params.write_text("{ broken")  # an editor saving half a file meanwhile
    last = events[-1]
    assert isinstance(last, Failed) and last.config_error
    assert last.message.startswith("The files were uploaded, but the parameters file was not updated")
    assert "aitk params set 'adapters=[\"sql=/mount/models/sql/adapter\"]'" in last.detail
    assert params.read_text() == "{ broken"  # never overwritten
    params.write_text(good)
    again = await _run(session, config, UploadRequest.checked(adapter, "sql"))
    assert isinstance(again[-1], Done) and not _sent(again)  # nothing re-sent; the parameters now set
    assert json.loads(params.read_text())["parameters"]["adapters"]["value"] == ["sql=/mount/models/sql/adapter"]


# -- an adapter without its base ----------------------------------------------------------------------
async def test_an_adapter_alone_is_refused_when_the_share_has_no_base(session, local_factory, local_cloud, tmp_path):
    """Before: it was uploaded and adapterPath set; the local cloud then served its demo model
    and demo adapter instead, without a word (Azure's replica would fail to start)."""
    share = make_share(local_factory, "acctnobase1", SHARE, GROUP)
    config = InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=GROUP, STORAGE_ACCOUNT_NAME="acctnobase1",
                             FILE_SHARE_NAME=SHARE, ACA_APP_NAME="aiacaappx", ACA_APP_ENDPOINT="127.0.0.1:1")
    params_before = session.project.parameters_path.read_bytes()
    adapter = _adapter(tmp_path)
    events = await _run(session, config, UploadRequest.checked(adapter))
    assert isinstance(events[-1], Failed) and events[-1].config_error
    assert events[-1].message == ("The share has no base model at /mount/model-cache/microsoft/Phi-3-mini-4k-instruct, "
                                  "so the adapter would not be served; nothing was uploaded.")
    assert "--model BASE_DIR" in events[-1].detail
    assert not (local_cloud.files_root / "acctnobase1" / SHARE / "models").exists()  # nothing sent
    assert session.project.parameters_path.read_bytes() == params_before

    # with its base, or with modelPath naming a base the share holds, it goes up
    _put_base(share, "model-cache/elsewhere")
    doc = ParametersDocument.load(session.project.parameters_path)
    doc.set("modelPath", "/mount/model-cache/elsewhere")
    doc.save()
    events = await _run(session, config, UploadRequest.checked(adapter))
    assert isinstance(events[-1], Done), events[-1]


def test_cli_says_why_an_adapter_alone_is_refused(cli_cloud, local_factory, local_project, tmp_path, capsys):
    make_share(local_factory, "acctnobase2", SHARE, GROUP)
    InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=GROUP, STORAGE_ACCOUNT_NAME="acctnobase2",
                    FILE_SHARE_NAME=SHARE, ACA_APP_NAME="aiacaappx", ACA_APP_ENDPOINT="127.0.0.1:1",
                    ).save(Path(local_project) / "infra" / "inference.config.json")
    rc = main(["--project", str(local_project), "models", "upload", "--local", "--adapter", str(_adapter(tmp_path))])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("aitk: error: The share has no base model at /mount/model-cache/microsoft/"
                          "Phi-3-mini-4k-instruct, so the adapter would not be served; nothing was uploaded.")


async def test_a_local_cloud_serving_its_own_model_takes_an_adapter_alone(session, local_factory, tmp_path):
    """`aitk --local --model DIR`: every replica serves that model whatever the share holds."""
    make_share(local_factory, "acctnobase3", SHARE, GROUP)
    config = InferenceConfig(SUBSCRIPTION_ID=SUB, RESOURCE_GROUP_NAME=GROUP, STORAGE_ACCOUNT_NAME="acctnobase3",
                             FILE_SHARE_NAME=SHARE, ACA_APP_NAME="aiacaappx", ACA_APP_ENDPOINT="127.0.0.1:1")
    session.served_model = str(tmp_path / "model")
    events = await _run(session, config, UploadRequest.checked(_adapter(tmp_path)))
    assert isinstance(events[-1], Done), events[-1]
