"""The replica's pip step (aitk_tui.local.replica_deps): one environment per requirements
content, shared by every project and local cloud, built once and then skipped; a failed
install leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aitk_tui.local import replica_deps
from aitk_tui.local.replica_deps import Env, env_key, install

PINS = "transformers=={}\npeft=={}\n"


def _pins() -> str:
    import importlib.metadata as md

    return PINS.format(md.version("transformers"), md.version("peft"))


def test_the_key_is_the_requirements_content_not_the_project_folder(tmp_path):
    a, b = tmp_path / "project-a", tmp_path / "project-b"
    for root in (a, b):
        (root / "inference_server").mkdir(parents=True)
        (root / "inference_server" / "requirements.txt").write_text("-r extra.txt\nfastapi==0.165.0\n")
        (root / "inference_server" / "extra.txt").write_text("anyio==4.16.0\n")
    args = ["-r", "inference_server/requirements.txt"]
    assert env_key(args, a, None) == env_key(args, b, None)
    (b / "inference_server" / "extra.txt").write_text("anyio==4.15.0\n")  # a nested file counts too
    assert env_key(args, a, None) != env_key(args, b, None)
    assert env_key(args + ["--no-index"], a, None) != env_key(args, a, None)
    assert env_key(["--requirement=inference_server/requirements.txt"], a, None) != env_key(args, a, None)


def test_an_unchanged_requirements_file_is_installed_once_then_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text(_pins())
    root, pointer = tmp_path / "envs", tmp_path / "run" / "replica.python"
    args = ["--no-index", "-r", "requirements.txt"]  # all satisfied by aitk's interpreter: no network
    assert install(args, root, pointer, None) == 0
    first = capsys.readouterr().out
    assert "into a new environment" in first and "pip install done" in first
    env = Env.load(root / env_key(args, tmp_path, None))
    assert env is not None and pointer.read_text().strip() == env.python
    # layered: the environment's python imports aitk's transformers (torch stands in for the image's)
    probe = subprocess.run([env.python, "-c", "import transformers, sys; print(transformers.__version__, sys.prefix)"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert probe == [__import__("transformers").__version__, str(env.root)]

    pointer.unlink()
    assert install(args, root, pointer, None) == 0
    again = capsys.readouterr().out
    assert "skipped, the requirements did not change" in again and "into a new environment" not in again
    assert pointer.read_text().strip() == env.python


def test_a_failed_install_exits_with_pips_status_and_leaves_no_environment(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text("aitk-no-such-package==1.0\n")
    root, pointer = tmp_path / "envs", tmp_path / "replica.python"
    args = ["--no-index", "-r", "requirements.txt"]
    assert install(args, root, pointer, None) != 0
    assert "No matching distribution found for aitk-no-such-package==1.0" in capfd.readouterr().err
    assert not (root / env_key(args, tmp_path, None)).exists() and not pointer.exists()


def test_pip_without_an_environment_never_changes_aitks_own(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AITK_LOCAL_PYTHON_FILE", str(tmp_path / "none.python"))
    monkeypatch.setenv("AITK_LOCAL_ENVS", str(tmp_path / "envs"))
    assert replica_deps.main(["uninstall", "-y", "transformers"]) == 1
    assert "refused" in capsys.readouterr().out
    assert Path(__import__("transformers").__file__).is_file()
