"""The files aitk shares with AI Toolkit: parameters round trip, naming rules, the
inference config, atomic writes; a corrupt file is reported and never rewritten."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.config import naming
from aitk_tui.config.inference_config import KEYS, ConfigFileError, InferenceConfig
from aitk_tui.config.parameters import ParametersDocument, ParametersFileError, parse_cli_value
from aitk_tui.errors import AitkError
from aitk_tui.fsutil import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]

# infra/provision/inference.parameters.json exactly as AI Toolkit's Phi-3 template ships it.
AITK_ORIGINAL = """{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "defaultCommands": {
      "value": [
        "cd /mount",
        "pip install torch==2.4.0 transformers==4.43.4 bitsandbytes==0.43.1 peft==0.10.0 gradio==4.43.0 sse-starlette==2.1.2 einops==0.8.0",
        "cd /mount/inference",
        "python3 ./gradio_chat.py"
      ]
    },
    "maximumInstanceCount": {
      "value": 2
    },
    "location": {
      "value": null
    },
    "storageAccountName": {
      "value": null
    },
    "fileShareName": {
      "value": null
    },
    "acaEnvironmentName": {
      "value": null
    },
    "acaEnvironmentStorageName": {
      "value": null
    },
    "acaAppName": {
      "value": null
    },
    "acaLogAnalyticsName": {
      "value": null
    }
  }
}
"""


def _project(tmp_path: Path, params_text: str = AITK_ORIGINAL) -> Path:
    (tmp_path / "infra" / "provision").mkdir(parents=True)
    (tmp_path / "infra" / "provision" / "inference.parameters.json").write_text(params_text)
    return tmp_path


# -- parameters round trip ---------------------------------------------------------------------
def test_original_ai_toolkit_file_loads_validates_and_drops_nulls(tmp_path):
    path = _project(tmp_path) / "infra/provision/inference.parameters.json"
    doc = ParametersDocument.load(path)
    doc.validate()
    assert doc.errors() == {}
    arm = doc.arm_parameters()
    assert set(arm) == {"defaultCommands", "maximumInstanceCount"}  # nulls mean "template default"
    assert arm["maximumInstanceCount"] == {"value": 2}


def test_edit_changes_only_that_value_and_keeps_unknown_keys_and_order(tmp_path):
    raw = json.loads(AITK_ORIGINAL)
    raw["myTeamNote"] = {"owner": "ml-team"}
    raw["parameters"]["customThing"] = {"value": "keep me", "metadata": {"x": 1}}
    raw["parameters"]["location"]["comment"] = "unknown key inside a parameter"
    text = json.dumps(raw, indent=2) + "\n"
    path = _project(tmp_path, text) / "infra/provision/inference.parameters.json"

    doc = ParametersDocument.load(path)
    doc.set("location", "westus3")
    doc.save()

    after = path.read_text()
    expected = text.replace('"location": {\n      "value": null', '"location": {\n      "value": "westus3"')
    assert after == expected  # one value changed, every other byte (order, unknown keys) the same
    assert list(json.loads(after)["parameters"]) == list(raw["parameters"])


def test_cli_params_set_round_trip(tmp_path, capsys):
    root = _project(tmp_path)
    path = root / "infra/provision/inference.parameters.json"
    assert main(["--project", str(root), "params", "set", "maximumInstanceCount=3", "acaAppName=my-app"]) == 0
    data = json.loads(path.read_text())
    assert data["parameters"]["maximumInstanceCount"]["value"] == 3
    assert data["parameters"]["acaAppName"]["value"] == "my-app"
    assert path.read_text() == AITK_ORIGINAL.replace('"value": 2', '"value": 3').replace(
        '"acaAppName": {\n      "value": null', '"acaAppName": {\n      "value": "my-app"')
    assert main(["--project", str(root), "params", "set", "acaAppName=null"]) == 0
    assert json.loads(path.read_text())["parameters"]["acaAppName"]["value"] is None


def test_cli_params_show_and_validate(tmp_path, capsys):
    root = _project(tmp_path)
    assert main(["--project", str(root), "params", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["maximumInstanceCount"] == 2 and shown["location"] is None
    assert main(["--project", str(root), "params", "validate"]) == 0
    assert "valid" in capsys.readouterr().out


def test_cli_params_set_rejects_a_bad_value_without_writing(tmp_path, capsys):
    root = _project(tmp_path)
    path = root / "infra/provision/inference.parameters.json"
    rc = main(["--project", str(root), "params", "set", "location=westus3", "storageAccountName=Bad_Name"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("aitk: error: ") and "Storage account name" in err
    assert path.read_text() == AITK_ORIGINAL  # nothing written, not even the valid first value


def test_cli_params_set_refuses_the_api_key(tmp_path, capsys):
    root = _project(tmp_path)
    assert main(["--project", str(root), "params", "set", "inferenceApiKey=abc"]) == 2
    assert "secret" in capsys.readouterr().err


@pytest.mark.parametrize("corrupt", [b'{"parameters": {"location": {"value": nul', b"\xff\xfe not utf8",
                                     b'["not", "an", "object"]', b'{"parameters": 3}'])
def test_corrupt_parameters_file_is_reported_and_left_unchanged(tmp_path, capsys, corrupt):
    root = _project(tmp_path)
    path = root / "infra/provision/inference.parameters.json"
    path.write_bytes(corrupt)
    with pytest.raises(ParametersFileError) as exc:
        ParametersDocument.load(path)
    assert "left unchanged" in exc.value.message or "could not be read" in exc.value.message
    for argv in (["params", "set", "location=westus3"], ["params", "show"], ["params", "validate"],
                 ["provision", "--local", "--yes", "--subscription", "x", "--resource-group", "y"]):
        rc = main(["--project", str(root), *argv])
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert err.startswith("aitk: error: ") and err.count("\n") == 1, err
        assert path.read_bytes() == corrupt  # byte for byte


def test_save_refuses_when_the_file_became_corrupt_meanwhile(tmp_path):
    path = _project(tmp_path) / "infra/provision/inference.parameters.json"
    doc = ParametersDocument.load(path)
    path.write_text("{ broken")
    doc.set("location", "eastus")
    with pytest.raises(ParametersFileError):
        doc.save()
    assert path.read_text() == "{ broken"


def test_parse_cli_value_types():
    assert parse_cli_value("maximumInstanceCount", "4") == 4
    assert parse_cli_value("defaultCommands", '["cd /mount", "python3 -m inference_server"]') == [
        "cd /mount", "python3 -m inference_server"]
    assert parse_cli_value("location", "null") is None
    assert parse_cli_value("location", "eastus") == "eastus"
    with pytest.raises(AitkError):
        parse_cli_value("maximumInstanceCount", "many")
    with pytest.raises(AitkError):
        parse_cli_value("defaultCommands", "cd /mount")


# -- naming rules ------------------------------------------------------------------------
RULES = {
    naming.storage_account_name: (["aistorage12345", "abc", "a" * 24], ["ab", "a" * 25, "Has-Upper", "has-dash", "ünï"]),
    naming.file_share_name: (["aifileshare1", "my-share", "abc"], ["ab", "-share", "share-", "my--share", "Share", "a" * 64]),
    naming.container_app_name: (["aiacaapp12345", "my-app", "ab"], ["a", "1app", "app-", "my--app", "App", "a" * 33]),
    naming.environment_name: (["aienv12345", "env-1"], ["Env", "-env", "env-", "e--nv", "e"]),
    naming.environment_storage_name: (["aienvstorage1", "st-1", "1st"], ["a", "-st", "st-", "St"]),
    naming.log_analytics_name: (["ailog12345", "Log-1", "abcd"], ["abc", "-log", "log-", "log_1", "a" * 64]),
    naming.resource_group_name: (["rg-demo", "My_RG.(1)", "a"], ["", "ends.", "has space", "a" * 91, "slash/"]),
    naming.location: (["eastus", "westus3", "swedencentral"], ["East US", "mars", ""]),
    naming.gpu_profile: (["Consumption-GPU-NC24-A100", "Consumption-GPU-NC8as-T4"], ["NC24-A100", "gpu"]),
    naming.share_path: (["/mount/models/x", "/mount/a"], ["/etc/passwd", "models/x", "/mount/../etc"]),
}


@pytest.mark.parametrize("check", list(RULES), ids=lambda f: f.__name__)
def test_naming_rule(check):
    good, bad = RULES[check]
    for value in good:
        assert check(value) == value
    for value in bad:
        with pytest.raises(naming.NameError_):
            check(value)


def test_instance_count_and_command_list_rules():
    assert naming.instance_count(2) == 2 and naming.instance_count("3") == 3
    for bad in (0, -1, 101, "x", True):
        with pytest.raises(naming.NameError_):
            naming.instance_count(bad)
    assert naming.command_list(["cd /mount"]) == ["cd /mount"]
    for bad in ([], "cd /mount", [""], [1]):
        with pytest.raises(naming.NameError_):
            naming.command_list(bad)


def test_every_parameter_spec_names_a_template_parameter():
    template = json.loads((REPO / "infra/provision/inference.json").read_text())
    assert {s.name for s in naming.PARAMETER_SPECS} <= set(template["parameters"])


# -- inference config ----------------------------------------------------------------------
def test_hand_filled_config_works_like_a_provisioned_one(tmp_path):
    path = tmp_path / "inference.config.json"
    path.write_text(json.dumps({
        "SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "RESOURCE_GROUP_NAME": "rg",
        "STORAGE_ACCOUNT_NAME": "st1",
        "FILE_SHARE_NAME": "share", "ACA_APP_NAME": "app", "ACA_APP_ENDPOINT": "app.example.io",
        "SOMETHING_ELSE": "ignored"}))
    cfg = InferenceConfig.load(path)
    assert cfg.require() is cfg
    assert cfg.endpoint_url == "https://app.example.io"
    assert InferenceConfig(ACA_APP_ENDPOINT="https://x.io/").endpoint_url == "https://x.io"
    cfg.save(path)
    assert list(json.loads(path.read_text())) == list(KEYS)  # exactly the six keys, in order


@pytest.mark.parametrize("key,value", [
    ("ACA_APP_NAME", "x/../../../Microsoft.Storage/storageAccounts/victim"), ("ACA_APP_NAME", ".."),
    ("STORAGE_ACCOUNT_NAME", "acct/.."), ("FILE_SHARE_NAME", "share%2F.."), ("RESOURCE_GROUP_NAME", ".."),
    ("RESOURCE_GROUP_NAME", "rg/x"), ("SUBSCRIPTION_ID", "../subscriptions/other"),
])
def test_require_refuses_names_azure_would_not_accept(key, value):
    """Names from the file go into resource ids and request paths: each is checked against
    Azure's naming rules first, so a dot segment or a slash never addresses another resource."""
    good = {"SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "RESOURCE_GROUP_NAME": "rg.1(x)",
            "STORAGE_ACCOUNT_NAME": "st1", "FILE_SHARE_NAME": "share", "ACA_APP_NAME": "app-1"}
    assert InferenceConfig(**good).require(*good) is not None
    with pytest.raises(ConfigFileError) as exc:
        InferenceConfig(**{**good, key: value}).require(*good)
    assert "Azure would not accept" in exc.value.message and exc.value.detail.startswith(key)


def test_config_template_has_six_nulls_and_require_names_the_missing_keys():
    cfg = InferenceConfig.load(REPO / "infra/inference.config.json")
    assert cfg.missing() == list(KEYS)
    with pytest.raises(ConfigFileError) as exc:
        cfg.require("ACA_APP_ENDPOINT")
    assert "ACA_APP_ENDPOINT" in exc.value.message


def test_corrupt_config_is_reported_and_not_overwritten(tmp_path, capsys):
    root = _project(tmp_path)
    path = root / "infra/inference.config.json"
    path.write_text("{ nope")
    with pytest.raises(ConfigFileError):
        InferenceConfig.load(path)
    with pytest.raises(ConfigFileError):
        InferenceConfig(SUBSCRIPTION_ID="x").save(path)
    assert path.read_text() == "{ nope"
    assert main(["--project", str(root), "deploy", "--local"]) == 2
    assert capsys.readouterr().err.startswith("aitk: error: inference.config.json is not valid JSON")
    assert path.read_text() == "{ nope"


# -- atomic writes -------------------------------------------------------------------------
def test_atomic_write_keeps_mode_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# -- names the template does not declare, unset, bad input (issue 10 #9, issue 12 #12) -----------
def _with_template(root: Path) -> Path:
    (root / "infra/provision/inference.json").write_bytes((REPO / "infra/provision/inference.json").read_bytes())
    return root


def test_params_set_refuses_an_unknown_name_with_a_suggestion(tmp_path, capsys):
    root = _with_template(_project(tmp_path))
    path = root / "infra/provision/inference.parameters.json"
    for argv, hint in ((["maximumInstancecount=3"], "did you mean maximumInstanceCount?"),
                       (["location=eastus", "foo=bar"], "foo is not a parameter of the template")):
        rc = main(["--project", str(root), "params", "set", *argv])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "" and err.count("\n") == 1 and hint in err, err
        assert path.read_text() == AITK_ORIGINAL  # nothing written, not even the valid first value
    # a parameter the template declares (though aitk has no form field for it) is accepted
    assert main(["--project", str(root), "params", "set", "containerCpu=8"]) == 0
    assert json.loads(path.read_text())["parameters"]["containerCpu"] == {"value": 8}


def test_unknown_names_in_the_file_are_kept_but_validate_reports_them(tmp_path, capsys):
    raw = json.loads(AITK_ORIGINAL)
    raw["parameters"]["maximumInstancecount"] = {"value": 3}  # what the old `params set` let through
    raw["parameters"]["oldNote"] = {"value": None}  # null: never sent to ARM, so harmless
    root = _with_template(_project(tmp_path, json.dumps(raw, indent=2) + "\n"))
    path = root / "infra/provision/inference.parameters.json"
    assert main(["--project", str(root), "params", "validate"]) == 2
    out, err = capsys.readouterr()
    assert out == ("maximumInstancecount: maximumInstancecount is not a parameter of the template "
                   "(did you mean maximumInstanceCount?)\n")
    assert main(["--project", str(root), "params", "set", "location=eastus"]) == 0
    assert list(json.loads(path.read_text())["parameters"]) == list(raw["parameters"])  # kept, in order
    rc = main(["--project", str(root), "provision", "--local", "--yes", "--subscription", "s", "--resource-group", "g"])
    assert rc == 2 and "maximumInstancecount" in capsys.readouterr().err  # refused before any cloud call


def test_params_unset_restores_the_template_default_and_removes_unknown_names(tmp_path, capsys):
    raw = json.loads(AITK_ORIGINAL)
    raw["parameters"]["location"]["value"] = "westus3"
    raw["parameters"]["typo"] = {"value": "x"}
    root = _with_template(_project(tmp_path, json.dumps(raw, indent=2) + "\n"))
    path = root / "infra/provision/inference.parameters.json"
    assert main(["--project", str(root), "params", "unset", "location", "typo"]) == 0
    out = capsys.readouterr().out
    assert out == "location = null (template default)\nremoved typo (not a parameter of the template)\n"
    assert path.read_text() == AITK_ORIGINAL
    for name, words in (("maximumInstanceCount", "has no template default"), ("locaton", "did you mean location?")):
        assert main(["--project", str(root), "params", "unset", name]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert path.read_text() == AITK_ORIGINAL


@pytest.mark.parametrize("bom,codec,newline", [(b"", "utf-8", "\r\n"), (b"\xef\xbb\xbf", "utf-8", "\n"),
                                               (b"\xef\xbb\xbf", "utf-8", "\r\n"), (b"\xff\xfe", "utf-16-le", "\r\n")])
def test_set_keeps_line_endings_encoding_and_bom(tmp_path, capsys, bom, codec, newline):
    original = AITK_ORIGINAL.replace('"location": {\n      "value": null', '"location": {\n      "value": "ñ"')
    root = _project(tmp_path)
    path = root / "infra/provision/inference.parameters.json"
    path.write_bytes(bom + original.replace("\n", newline).encode(codec))
    assert main(["--project", str(root), "params", "set", "maximumInstanceCount=3"]) == 0, capsys.readouterr().err
    expected = original.replace('"value": 2', '"value": 3')
    assert path.read_bytes() == bom + expected.replace("\n", newline).encode(codec)


def test_a_file_nested_too_deeply_is_one_sentence_and_left_unchanged(tmp_path, capsys):
    root = _project(tmp_path)
    path = root / "infra/provision/inference.parameters.json"
    deep = '{"parameters": {"a": {"value": ' + "[" * 100_000 + "]" * 100_000 + "}}}"
    path.write_text(deep)
    for argv in (["params", "set", "location=eastus"], ["params", "show"], ["params", "validate"]):
        assert main(["--project", str(root), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"aitk: error: {path} is nested too deeply to be a parameters file; it was left "
                              "unchanged. (") and err.count("\n") == 1, err
    assert path.read_text() == deep


@pytest.mark.parametrize("where,code,words", [
    ("mkstemp", errno.EACCES, "the folder is read-only"), ("mkstemp", errno.EROFS, "the file system is read-only"),
    ("write", errno.ENOSPC, "the disk is full"), ("fsync", errno.ENOSPC, "the disk is full")])
def test_a_failed_write_says_why_and_keeps_the_file(tmp_path, capsys, monkeypatch, where, code, words):
    root = _project(tmp_path)
    path = root / "infra/provision/inference.parameters.json"

    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    if where == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", fail)
    elif where == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:  # the temp file's write: a disk that fills up half way
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                fail()

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    rc = main(["--project", str(root), "params", "set", "location=eastus"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"aitk: error: Cannot write {path}: {words}. (")
    assert f"Error: [Errno {code}]" in err
    assert path.read_text() == AITK_ORIGINAL
    assert [p.name for p in path.parent.iterdir()] == ["inference.parameters.json"]  # no temp file left


def test_file_write_error_is_an_oserror_and_an_aitk_error(tmp_path, monkeypatch):
    from aitk_tui.fsutil import FileWriteError

    monkeypatch.chdir(tmp_path)
    err = FileWriteError(tmp_path / "sub" / "f.json", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, OSError) and isinstance(err, AitkError) and err.errno == errno.ENOSPC
    assert err.message == "Cannot write sub/f.json: the disk is full."


def test_one_name_for_the_instance_count_in_the_form_and_its_rule():
    label = naming.SPECS_BY_NAME["maximumInstanceCount"].label
    assert label == "Maximum instance count"
    for bad in (0, "many"):
        with pytest.raises(naming.NameError_) as exc:
            naming.instance_count(bad)
        assert str(exc.value).startswith(label)


def test_a_symlinked_parameters_file_stays_a_symlink(tmp_path, capsys):
    root = _project(tmp_path / "p")
    shared = tmp_path / "shared.parameters.json"
    shared.write_text(AITK_ORIGINAL)
    link = root / "infra/provision/inference.parameters.json"
    link.unlink()
    link.symlink_to(shared)
    assert main(["--project", str(root), "params", "set", "location=eastus"]) == 0
    assert link.is_symlink() and json.loads(shared.read_text())["parameters"]["location"]["value"] == "eastus"


def test_a_config_or_state_file_nested_too_deeply_is_reported_not_a_crash(tmp_path, capsys):
    from aitk_tui.config.state import ProjectState

    root = _project(tmp_path)
    deep = "[" * 100_000 + "]" * 100_000
    (root / "infra/inference.config.json").write_text(deep)
    (root / ".aitk").mkdir()
    (root / ".aitk/state.json").write_text(deep)
    assert ProjectState.load(root / ".aitk/state.json") == ProjectState()  # preferences only: start empty
    assert main(["--project", str(root), "deploy", "--local"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aitk: error: inference.config.json is nested too deeply") and err.count("\n") == 1
    assert (root / "infra/inference.config.json").read_text() == deep


def test_remembered_names_azure_would_not_accept_are_dropped(tmp_path):
    """.aitk/state.json feeds --subscription and --resource-group: a '..' there would address
    the subscription once a client removes the dot segment."""
    from aitk_tui.config.state import ProjectState

    path = tmp_path / "state.json"
    sub = "00000000-0000-0000-0000-000000000000"
    path.write_text(json.dumps({"subscription_id": "../x", "resource_group": "..", "location": "eastus"}))
    state = ProjectState.load(path)
    assert (state.subscription_id, state.resource_group, state.location) == (None, None, "eastus")
    path.write_text(json.dumps({"subscription_id": sub, "resource_group": "rg-1.(a)"}))
    assert (ProjectState.load(path).subscription_id, ProjectState.load(path).resource_group) == (sub, "rg-1.(a)")


# -- container size against the GPU profile (issue 18 #2) ---------------------------------------------
T4 = "Consumption-GPU-NC8as-T4"


def test_params_validate_catches_a_container_larger_than_the_gpu_profile(tmp_path, capsys):
    raw = json.loads(AITK_ORIGINAL)
    raw["parameters"]["gpuProfileType"] = {"value": T4}  # the template's defaults: 24 vCPU, 220Gi (the A100's)
    root = _with_template(_project(tmp_path, json.dumps(raw, indent=2) + "\n"))
    assert main(["--project", str(root), "params", "validate"]) == 2
    out, _err = capsys.readouterr()
    assert out == ("containerCpu: 24 vCPU is more than the Consumption-GPU-NC8as-T4 profile offers (8 vCPU, 56 GiB); "
                   "use 8 or less\n")
    raw["parameters"]["containerCpu"] = {"value": 8}
    (root / "infra/provision/inference.parameters.json").write_text(json.dumps(raw))
    assert main(["--project", str(root), "params", "validate"]) == 2
    assert capsys.readouterr().out.startswith("containerMemory: 220Gi is more than the Consumption-GPU-NC8as-T4")


def test_params_set_t4_brings_the_container_size_down_to_fit(tmp_path, capsys):
    root = _with_template(_project(tmp_path))
    path = root / "infra/provision/inference.parameters.json"
    assert main(["--project", str(root), "params", "set", f"gpuProfileType={T4}"]) == 0
    out, _ = capsys.readouterr()
    assert out == (f"gpuProfileType = {T4}\ncontainerCpu = 8 (to fit {T4})\ncontainerMemory = 56Gi (to fit {T4})\n")
    values = {k: v["value"] for k, v in json.loads(path.read_text())["parameters"].items()}
    assert (values["containerCpu"], values["containerMemory"]) == (8, "56Gi")
    assert main(["--project", str(root), "params", "validate"]) == 0
    # back to the A100: the smaller size still fits, so nothing else changes
    assert main(["--project", str(root), "params", "set", "gpuProfileType=Consumption-GPU-NC24-A100"]) == 0
    assert capsys.readouterr().out.endswith("gpuProfileType = Consumption-GPU-NC24-A100\n")


def test_params_set_refuses_a_size_the_profile_cannot_give(tmp_path, capsys):
    root = _with_template(_project(tmp_path))
    path = root / "infra/provision/inference.parameters.json"
    rc = main(["--project", str(root), "params", "set", f"gpuProfileType={T4}", "containerCpu=12"])
    _out, err = capsys.readouterr()
    assert rc == 2 and "containerCpu: 12 vCPU is more than the Consumption-GPU-NC8as-T4 profile offers" in err
    assert "nothing was written" in err
    assert path.read_text() == AITK_ORIGINAL


def test_container_size_rules():
    assert naming.memory_gib("56Gi") == 56 and naming.memory_gib("512Mi") == 0.5 and naming.memory_gib("56") is None
    assert naming.resource_fit_error(T4, 8, "56Gi") is None
    assert naming.resource_fit_error(T4, 8, "57Gi")[0] == "containerMemory"
    assert naming.resource_fit_error("Consumption-GPU-NC24-A100", 24, "220Gi") is None
    with pytest.raises(naming.NameError_):
        naming.container_memory("lots")
