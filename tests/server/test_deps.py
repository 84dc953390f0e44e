"""The container's dependency step (``python3 -m inference_server.deps FILE``), run for real
as the container runs it: a requirements file installed once into an environment layered on
the interpreter, archived on the "share", and extracted by every later start whose
requirements did not change. Requirements come from wheels built here (``--no-index
--find-links``): no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.backend.test_replica_pip_step import build_wheel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def box(tmp_path):
    """A project folder with a requirements file, a wheel folder, a share and one local disk per container."""
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "aitk-tiny-pkg", "0.1.0", "aitk_tiny_pkg", 'VERSION = "0.1.0"\n')
    build_wheel(wheels, "aitk-tiny-pkg", "0.2.0", "aitk_tiny_pkg", 'VERSION = "0.2.0"\n')
    # pyte is one of aitk's own packages: the environment's pinned one must shadow it.
    build_wheel(wheels, "pyte", "0.0.1", "pyte", '__version__ = "0.0.1-replica"\n')
    (tmp_path / "project" / "inference_server").mkdir(parents=True)
    req = tmp_path / "project" / "inference_server" / "requirements.txt"
    req.write_text(f"--no-index\n--find-links {wheels}\naitk-tiny-pkg==0.1.0\npyte==0.0.1\n")
    return tmp_path


def run_deps(box: Path, disk: str = "disk-1", *extra_env: tuple[str, str], new_session: bool = False,
             wait: bool = True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITK_")}
    env.update(PYTHONPATH=str(REPO), AITK_DEPS_DIR=str(box / disk), AITK_DEPS_SHARE=str(box / "share" / ".aitk" / "deps"),
               PIP_CACHE_DIR=str(box / "pip-cache"), **dict(extra_env))
    cmd = [sys.executable, "-m", "inference_server.deps", "inference_server/requirements.txt"]
    proc = subprocess.Popen(cmd, cwd=box / "project", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_session)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def archives(box: Path) -> list[Path]:
    folder = box / "share" / ".aitk" / "deps"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def probe(box: Path, disk: str = "disk-1") -> list[str]:
    """What the prepared environment's interpreter imports (its prefix, the pinned packages)."""
    import json

    active = json.loads((box / disk / "active.json").read_text())
    out = subprocess.run([active["python"], "-c", "import sys, aitk_tiny_pkg, pyte, transformers; "
                          "print(sys.prefix, aitk_tiny_pkg.VERSION, pyte.__version__, transformers.__version__)"],
                         capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    return out.split()


def test_an_unchanged_file_is_extracted_from_the_share_not_installed(box):
    code, out, err = run_deps(box)
    assert code == 0, err
    assert "pip install -r inference_server/requirements.txt: into a new environment" in out
    assert "Successfully installed aitk-tiny-pkg-0.1.0 pyte-0.0.1" in out
    (archive,) = archives(box)
    assert archive.name.endswith(".tar.gz") and tarfile.is_tarfile(archive)

    # A new container: empty local disk, same share.
    code, out, err = run_deps(box, "disk-2")
    assert code == 0, err
    assert "unchanged, environment" in out and f"extracted from {archive}" in out
    assert "pip install" not in out and "Successfully installed" not in out
    prefix, tiny, pyte_version, transformers_version = probe(box, "disk-2")
    assert Path(prefix).is_relative_to(box / "disk-2")
    assert (tiny, pyte_version) == ("0.1.0", "0.0.1-replica")  # the pinned ones, not aitk's pyte
    assert transformers_version == __import__("transformers").__version__  # from the layer below (the image)
    assert archives(box) == [archive]


def test_a_changed_file_rebuilds_and_keeps_both_archives(box):
    assert run_deps(box)[0] == 0
    (first,) = archives(box)
    req = box / "project" / "inference_server" / "requirements.txt"
    req.write_text(req.read_text().replace("aitk-tiny-pkg==0.1.0", "aitk-tiny-pkg==0.2.0"))
    code, out, err = run_deps(box, "disk-2")
    assert code == 0, err
    assert "into a new environment" in out and "Successfully installed aitk-tiny-pkg-0.2.0" in out
    assert probe(box, "disk-2")[1] == "0.2.0"
    assert len(archives(box)) == 2 and first in archives(box)


def test_a_package_that_does_not_exist_fails_with_pips_error_and_publishes_nothing(box):
    req = box / "project" / "inference_server" / "requirements.txt"
    req.write_text(req.read_text() + "aitk-no-such-package==1.0\n")
    code, out, err = run_deps(box)
    assert code != 0
    assert "ERROR: No matching distribution found for aitk-no-such-package==1.0" in err
    assert archives(box) == [] and not (box / "disk-1" / "active.json").exists()
    assert [p.name for p in (box / "disk-1").iterdir()] == []  # the half-built environment is gone


def test_a_missing_requirements_file_says_so_in_pips_words(box):
    (box / "project" / "inference_server" / "requirements.txt").unlink()
    code, out, err = run_deps(box)
    assert code == 1
    assert ("ERROR: Could not open requirements file: [Errno 2] No such file or directory: "
            "'inference_server/requirements.txt'") in err


def _without_marker(archive: Path) -> None:
    """A whole gzip stream whose tar ends early (cut at a member boundary): no marker."""
    tmp = archive.with_suffix(".cut")
    with tarfile.open(archive, "r:gz") as src, tarfile.open(tmp, "w:gz") as dst:
        for member in src.getmembers()[:-1]:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    os.replace(tmp, archive)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "cut at a member"])
def test_a_damaged_archive_is_ignored_and_rebuilt(box, damage):
    assert run_deps(box)[0] == 0
    (archive,) = archives(box)
    data = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        middle = len(data) // 2
        archive.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    else:
        _without_marker(archive)
    code, out, err = run_deps(box, "disk-2")
    assert code == 0, err
    assert f"the archive {archive} is unreadable" in out and "into a new environment" in out
    assert probe(box, "disk-2")[1:3] == ["0.1.0", "0.0.1-replica"]
    # published again, whole: the next container extracts it
    assert archives(box) == [archive]
    code, out, err = run_deps(box, "disk-3")
    assert code == 0 and f"extracted from {archive}" in out, out + err


def test_two_containers_building_at_once_leave_one_valid_archive(box):
    procs = [run_deps(box, f"disk-{i}", wait=False) for i in (1, 2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    assert all("into a new environment" in out for _, out, _ in results)  # both built: neither saw an archive
    (archive,) = archives(box)  # one archive, no temporary file left
    code, out, err = run_deps(box, "disk-3")
    assert code == 0 and f"extracted from {archive}" in out, out + err
    assert probe(box, "disk-3")[1:3] == ["0.1.0", "0.0.1-replica"]


def test_old_archives_are_deleted_the_newest_kept(box):
    from inference_server.deps import KEEP, STALE_TMP_S

    folder = box / "share" / ".aitk" / "deps"
    folder.mkdir(parents=True)
    old = []
    for i in range(KEEP + 1):
        p = folder / f"{'0' * 23}{i}.tar.gz"
        p.write_bytes(b"x")
        t = time.time() - 1000 + i
        os.utime(p, (t, t))
        old.append(p)
    stale, fresh = folder / ".x.tar.gz.host.1.tmp", folder / ".y.tar.gz.host.2.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - STALE_TMP_S - 10,) * 2)
    fresh.write_bytes(b"being written")
    assert run_deps(box)[0] == 0
    names = {p.name for p in archives(box)}
    assert len([n for n in names if n.endswith(".tar.gz")]) == KEEP
    assert {p.name for p in old[-(KEEP - 1):]} <= names  # the newest old ones, beside the new one
    assert old[0].name not in names and stale.name not in names and fresh.name in names


def test_the_key_follows_the_files_the_image_and_the_layers(tmp_path, monkeypatch):
    from inference_server.deps import env_key, requirement_files

    (tmp_path / "requirements.txt").write_text("-r more.txt\nfastapi==0.165.0\n")
    (tmp_path / "more.txt").write_text("anyio==4.16.0\n")
    files = requirement_files(str(tmp_path / "requirements.txt"))
    assert len(files) == 2
    layers = [str(tmp_path)]
    monkeypatch.setenv("AITK_CONTAINER_IMAGE", "docker.io/pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime")
    key = env_key(files, layers)
    (tmp_path / "more.txt").write_text("anyio==4.15.0\n")  # a nested file counts
    assert env_key(requirement_files(str(tmp_path / "requirements.txt")), layers) != key
    monkeypatch.setenv("AITK_CONTAINER_IMAGE", "docker.io/pytorch/pytorch:2.12.0-cuda12.6-cudnn9-runtime")
    assert env_key(files, layers) != key
    monkeypatch.setenv("AITK_CONTAINER_IMAGE", "docker.io/pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime")
    assert env_key(files, layers) == key
    assert env_key(files, [str(tmp_path / "other-site")]) != key


def test_the_step_imports_only_the_standard_library():
    out = subprocess.run([sys.executable, "-c", "import sys; import inference_server.deps; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    assert not {m.split(".")[0] for m in out} & {"pydantic", "pydantic_settings", "torch", "fastapi", "transformers",
                                                 "peft", "numpy", "uvicorn", "packaging", "pip"}


def test_the_server_start_runs_in_the_environment_of_its_own_command_only(tmp_path):
    """``use_prepared_environment`` re-executes ``-m inference_server ARGS`` with the prepared
    interpreter, but only for a process of the session that ran the step."""
    import json

    fake = tmp_path / "env" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\necho \"$AITK_DEPS_ACTIVE $*\" > {tmp_path / 'ran'}\n")
    fake.chmod(0o755)
    code = "from inference_server.deps import use_prepared_environment as u; u(['--port', '1']); print('no exec')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITK_")}
    env.update(PYTHONPATH=str(REPO), AITK_DEPS_DIR=str(tmp_path))

    def start(sid: int, extra_env: dict | None = None, **kw) -> str:
        (tmp_path / "active.json").write_text(json.dumps({"format": 1, "key": "k1", "root": str(tmp_path / "env"),
                                                          "python": str(fake), "sid": sid}))
        return subprocess.run([sys.executable, "-c", code], env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, check=True, **kw).stdout

    assert start(os.getsid(0)) == ""  # exec'd
    assert (tmp_path / "ran").read_text().split() == ["k1", "-m", "inference_server", "--port", "1"]
    (tmp_path / "ran").unlink()
    # the server's own start does it first thing
    subprocess.run([sys.executable, "-m", "inference_server", "--help"], env=env, cwd=REPO, check=True,
                   capture_output=True)
    assert (tmp_path / "ran").read_text().split() == ["k1", "-m", "inference_server", "--help"]
    (tmp_path / "ran").unlink()
    assert start(os.getsid(0), start_new_session=True).strip() == "no exec"  # another session: a stale file
    assert start(os.getsid(0), {"AITK_DEPS_ACTIVE": "k1"}).strip() == "no exec"  # already inside
    assert not (tmp_path / "ran").exists()
    shutil.rmtree(tmp_path / "env")
    assert start(os.getsid(0)).strip() == "no exec"  # the environment is gone: run as is


@pytest.mark.parametrize("damage", [None, "truncated"])
def test_without_a_tar_program_the_standard_library_extracts(box, monkeypatch, capsys, damage):
    from inference_server import deps

    assert run_deps(box)[0] == 0
    (archive,) = archives(box)
    if damage:
        archive.write_bytes(archive.read_bytes()[:-5000])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    key = archive.name.removesuffix(".tar.gz")
    root = box / "disk-2" / key
    assert deps.extract(archive, root, key) is (damage is None)
    if damage:
        assert "is unreadable" in capsys.readouterr().out and not root.exists()
        assert list((box / "disk-2").iterdir()) == []
    else:
        assert (root / "aitk-deps.json").is_file() and (root / "bin" / "python").is_symlink()
