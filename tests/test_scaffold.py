"""`aitk init` writes the shipped project files and never overwrites a file the user changed."""

import json

from aitk_tui.scaffold import init_project, shipped_files


def test_init_writes_every_shipped_file(tmp_path):
    report = init_project(tmp_path)
    shipped = shipped_files()
    assert sorted(report.written) == sorted(shipped)
    for rel, src in shipped.items():
        assert (tmp_path / rel).read_bytes() == src.read_bytes()
    # the parameters file is the AI Toolkit one, loadable as JSON with the toolkit's names
    params = json.loads((tmp_path / "infra/provision/inference.parameters.json").read_text())
    assert {"defaultCommands", "maximumInstanceCount", "acaAppName"} <= set(params["parameters"])
    assert (tmp_path / "inference_server" / "__main__.py").is_file()
    assert (tmp_path / ".aitk" / ".gitignore").is_file()


def test_init_again_keeps_user_changes_and_reports_them(tmp_path):
    init_project(tmp_path)
    changed = tmp_path / "infra/provision/inference.parameters.json"
    changed.write_text('{"mine": true}\n')
    removed = tmp_path / "infra/provision/inference.bicep"
    removed.unlink()

    report = init_project(tmp_path)

    assert changed.read_text() == '{"mine": true}\n'
    assert report.conflicts == ["infra/provision/inference.parameters.json"]
    assert report.written == ["infra/provision/inference.bicep"]
    assert removed.is_file()
    assert "infra/provision/inference.json" in report.kept


def test_init_refreshes_files_the_user_never_touched(tmp_path):
    src = tmp_path / "src"
    (src / "infra").mkdir(parents=True)
    (src / "inference_server").mkdir()
    (src / "infra" / "a.txt").write_text("v1")
    (src / "inference_server" / "b.py").write_text("x = 1")
    dest = tmp_path / "proj"
    init_project(dest, source=src)
    (src / "infra" / "a.txt").write_text("v2")  # a newer aitk ships a new version
    (src / "inference_server" / "b.py").write_text("x = 2")
    (dest / "inference_server" / "b.py").write_text("x = 'mine'")

    report = init_project(dest, source=src)

    assert report.updated == ["infra/a.txt"]
    assert (dest / "infra" / "a.txt").read_text() == "v2"
    assert report.conflicts == ["inference_server/b.py"]
    assert (dest / "inference_server" / "b.py").read_text() == "x = 'mine'"


def _used_checkout(tmp_path):
    """A copy of the aitk tree as the old Quick start left it: `aitk --local` ran in it."""
    import shutil

    from aitk_tui import scaffold

    root = tmp_path / "checkout"
    for d in scaffold.SHIPPED_DIRS:
        shutil.copytree(scaffold.template_root() / d, root / d,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "infra/inference.config.json").write_text(json.dumps({
        "SUBSCRIPTION_ID": "00000000-0000-0000-0000-00000000a17c", "RESOURCE_GROUP_NAME": "rg-demo",
        "STORAGE_ACCOUNT_NAME": "aistoragex", "FILE_SHARE_NAME": "aifilesharex", "ACA_APP_NAME": "aiacaappx",
        "ACA_APP_ENDPOINT": "127.0.0.1:8443"}, indent=2))
    params = root / "infra/provision/inference.parameters.json"
    params.write_text(params.read_text().replace('"value": 2', '"value": 7'))
    return root


def test_init_writes_the_shipped_templates_not_the_checkouts_working_state(tmp_path, monkeypatch):
    from aitk_tui import scaffold

    checkout = _used_checkout(tmp_path)
    monkeypatch.setattr(scaffold, "template_root", lambda: checkout)
    dest = tmp_path / "new-project"

    report = init_project(dest)

    assert "infra/inference.config.json" in report.written
    config = json.loads((dest / "infra/inference.config.json").read_text())
    assert list(config) == ["SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME",
                            "ACA_APP_NAME", "ACA_APP_ENDPOINT"]
    assert set(config.values()) == {None}
    params = json.loads((dest / "infra/provision/inference.parameters.json").read_text())
    assert params["parameters"]["maximumInstanceCount"] == {"value": 2}
    for rel in scaffold.USER_FILES:
        assert (dest / rel).read_bytes() == (scaffold.TEMPLATES / rel).read_bytes()
    # the code still comes from the installed tree
    assert (dest / "infra/provision/inference.json").read_bytes() == \
        (checkout / "infra/provision/inference.json").read_bytes()


def test_the_pristine_parameters_fit_the_arm_template_and_validate():
    from aitk_tui.config.parameters import ParametersDocument
    from aitk_tui.scaffold import TEMPLATES, template_root

    template = json.loads((template_root() / "infra/provision/inference.json").read_text())["parameters"]
    doc = ParametersDocument.load(TEMPLATES / "infra/provision/inference.parameters.json")
    assert set(doc.names()) <= set(template)
    # every parameter ARM cannot default is given (the API key aitk generates at provision time)
    assert {n for n, p in template.items() if "defaultValue" not in p} - {"inferenceApiKey"} <= set(doc.names())
    assert doc.errors() == {}


def test_init_summary_counts_files_in_words(tmp_path):
    src = tmp_path / "src"
    (src / "infra").mkdir(parents=True)
    (src / "inference_server").mkdir()
    (src / "infra" / "a.txt").write_text("v1")
    assert init_project(tmp_path / "p", source=src).summary() == "wrote 1 file, 0 already up to date"


def test_init_refuses_to_write_through_symbolic_links_inside_the_project(tmp_path):
    """A dangling link where a shipped file goes, or a linked folder, would make init write
    outside the project (or wherever the link points): it refuses, naming each link, and writes
    nothing."""
    import pytest

    from aitk_tui.errors import AitkError

    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "proj"
    (dest / "inference_server").mkdir(parents=True)
    (dest / "inference_server" / "app.py").symlink_to(outside / "planted.py")  # dangling
    (dest / "inference_server" / "static").symlink_to(outside, target_is_directory=True)

    with pytest.raises(AitkError) as e:
        init_project(dest)
    assert "inference_server/app.py" in e.value.message and "inference_server/static" in e.value.message
    assert list(outside.iterdir()) == []  # nothing written through either link
    assert not (dest / "infra").exists() and not (dest / ".aitk").exists()

    (dest / "inference_server" / "app.py").unlink()
    (dest / "inference_server" / "static").unlink()
    (dest / ".aitk").symlink_to(outside, target_is_directory=True)
    with pytest.raises(AitkError) as e:
        init_project(dest)
    assert ".aitk" in e.value.message and list(outside.iterdir()) == []
