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
