"""The container's dependency step (``python3 -m inference_server.deps FILE``), run for real
as the container runs it: a requirements file installed once into an environment layered on
the interpreter, archived on the "share", and extracted by every later start whose
requirements did not change. Requirements come from wheels built here (``--no-index
--find-links``): no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from inference_server.deps import MANIFEST
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
    parts = sorted(archive.glob("part-*.tar.gz"))
    assert archive.is_dir() and len(parts) > 1 and all(tarfile.is_tarfile(p) for p in parts)
    assert sorted(p.name for p in archive.iterdir()) == sorted([MANIFEST, *(p.name for p in parts)])

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


def _manifest(archive: Path, change=None) -> dict:
    data = json.loads((archive / MANIFEST).read_text())
    if change:
        change(data)
        (archive / MANIFEST).write_text(json.dumps(data))
    return data


def _set_size(archive: Path, part: Path) -> None:
    """The manifest agrees with a part rewritten in place (only its content is wrong)."""
    def fix(data):
        for entry in data["parts"]:
            if entry[0] == part.name:
                entry[1] = part.stat().st_size
    _manifest(archive, fix)


def damage_archive(archive: Path, damage: str) -> None:
    first, *_, last = [archive / name for name, _ in _manifest(archive)["parts"]]
    data = first.read_bytes()
    if damage == "truncated":  # a part cut short (a copy killed half-way)
        first.write_bytes(data[: len(data) // 2])
    elif damage == "truncated, manifest agrees":
        first.write_bytes(data[: len(data) // 2])
        _set_size(archive, first)
    elif damage == "corrupt":
        middle = len(data) // 2
        first.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    elif damage == "wrong checksum":  # the gzip trailer's CRC-32: every byte before it reads as valid
        first.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:])
    elif damage == "cut at a member":  # a whole gzip stream whose tar ends early: no marker
        tmp = last.with_suffix(".cut")
        with tarfile.open(last, "r:gz") as src, tarfile.open(tmp, "w:gz") as dst:
            for member in src.getmembers()[:-1]:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        os.replace(tmp, last)
        _set_size(archive, last)
    elif damage == "a part missing":
        last.unlink()
    elif damage == "no manifest":
        (archive / MANIFEST).unlink()
    elif damage == "another key's manifest":
        _manifest(archive, lambda data: data.update(key="0" * 24))


DAMAGES = ["truncated", "truncated, manifest agrees", "corrupt", "wrong checksum", "cut at a member", "a part missing", "no manifest",
           "another key's manifest"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_archive_is_ignored_and_rebuilt(box, damage):
    assert run_deps(box)[0] == 0
    (archive,) = archives(box)
    damage_archive(archive, damage)
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
    (archive,) = archives(box)  # one archive, no temporary folder left
    assert archive.is_dir() and (archive / MANIFEST).is_file()
    code, out, err = run_deps(box, "disk-3")
    assert code == 0 and f"extracted from {archive}" in out, out + err
    assert probe(box, "disk-3")[1:3] == ["0.1.0", "0.0.1-replica"]


def test_old_archives_are_deleted_the_newest_kept(box):
    from inference_server.deps import KEEP, STALE_TMP_S

    folder = box / "share" / ".aitk" / "deps"
    folder.mkdir(parents=True)
    old = []
    for i in range(KEEP + 1):  # archive folders, and the oldest ones of format 1 (one file)
        p = folder / (f"{'0' * 23}{i}.tar.gz" if i < 2 else f"{'0' * 23}{i}")
        if p.suffix == ".gz":
            p.write_bytes(b"x")
        else:
            p.mkdir()
            (p / "part-0.tar.gz").write_bytes(b"x")
        t = time.time() - 1000 + i
        os.utime(p, (t, t))
        old.append(p)
    stale, fresh = folder / ".aaaa.host.1.tmp", folder / ".bbbb.host.2.tmp"
    stale.mkdir()
    (stale / "part-0.tar.gz").write_bytes(b"half")
    os.utime(stale, (time.time() - STALE_TMP_S - 10,) * 2)
    fresh.mkdir()
    (fresh / "part-0.tar.gz").write_bytes(b"being written")
    unrelated = folder / "notes.txt"
    unrelated.write_text("not ours")
    assert run_deps(box)[0] == 0
    names = {p.name for p in archives(box)}
    assert len(names - {fresh.name, unrelated.name}) == KEEP
    assert {p.name for p in old[-(KEEP - 1):]} <= names  # the newest old ones, beside the new one
    assert old[0].name not in names and stale.name not in names and {fresh.name, unrelated.name} <= names


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


@pytest.mark.parametrize("damage", [None, "truncated, manifest agrees", "corrupt", "wrong checksum"])
def test_without_a_tar_program_the_standard_library_extracts(box, monkeypatch, capsys, damage):
    from inference_server import deps

    assert run_deps(box)[0] == 0
    (archive,) = archives(box)
    if damage:
        damage_archive(archive, damage)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    key = archive.name
    root = box / "disk-2" / key
    assert deps.extract(archive, root, key) is (damage is None)
    if damage:
        assert "is unreadable" in capsys.readouterr().out and not root.exists()
        assert list((box / "disk-2").iterdir()) == []
    else:
        assert (root / "aitk-deps.json").is_file() and (root / "bin" / "python").is_symlink()


def test_the_parts_are_runs_of_about_equal_work():
    from inference_server.deps import ENTRY_COST, PARTS, split

    entries = [(f"lib/pkg{i // 50}/m{i:04d}.py", (i * 7919) % 40_000) for i in range(2_000)]
    entries[100] = ("lib/big.so", 30 * 2**20)
    runs = split(entries, PARTS)
    assert len(runs) == PARTS and [n for run in runs for n in run] == [n for n, _ in entries]  # runs, in order
    size = dict(entries)
    weights = [sum(size[n] + ENTRY_COST for n in run) for run in runs]
    total = sum(weights)
    assert max(w for w, run in zip(weights, runs) if "lib/big.so" not in run) < 2 * total / PARTS
    assert split(entries[:3], PARTS) == [[entries[0][0]], [entries[1][0]], [entries[2][0]]]
    assert split([], PARTS) == []


def test_the_parts_are_extracted_at_once_on_as_many_cores(box, monkeypatch):
    """Each part goes to its own worker while cores remain: two parts in flight together."""
    import threading

    from inference_server import deps

    assert run_deps(box)[0] == 0
    (archive,) = archives(box)
    both = threading.Barrier(2, timeout=20)
    in_flight, most = [0], [0]
    lock = threading.Lock()
    real = deps._extract_part

    def counted(part, dest, tar):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            if part.name in ("part-0.tar.gz", "part-1.tar.gz"):
                both.wait()  # a BrokenBarrierError here: the second part never ran beside the first
            real(part, dest, tar)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(deps, "_extract_part", counted)
    monkeypatch.setattr(deps, "cpus", lambda: 2)
    root = box / "disk-2" / archive.name
    assert deps.extract(archive, root, archive.name)
    assert most[0] == 2 and (root / deps.MARKER).is_file()


def test_the_cores_a_container_may_use(monkeypatch, tmp_path):
    from inference_server import deps

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(deps, "CPU_MAX", tmp_path / "cpu.max")
    assert deps.cpus() == 16  # no cgroup file
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert deps.cpus() == 16
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 cores: three may run
    assert deps.cpus() == 3
    (tmp_path / "cpu.max").write_text("1000 100000\n")
    assert deps.cpus() == 1


def test_a_second_publish_keeps_the_first_archive_unless_told_it_was_unreadable(tmp_path, monkeypatch):
    from inference_server import deps

    monkeypatch.setenv("AITK_DEPS_SHARE", str(tmp_path / "share"))
    root, key = tmp_path / "env", "a" * 24
    (root / "lib").mkdir(parents=True)
    for i in range(20):
        (root / "lib" / f"m{i}.py").write_text(f"X = {i}\n" * 100)
    (root / deps.MARKER).write_text(json.dumps({"format": deps.FORMAT, "key": key, "root": str(root)}))

    def manifest_id() -> int:
        return (deps.archive_path(key) / MANIFEST).stat().st_ino

    first = deps.publish(root, key)
    assert first == deps.archive_path(key) and len(deps.archive_parts(first, key)[0]) > 1
    was = manifest_id()
    assert deps.publish(root, key) == first and manifest_id() == was  # another replica's whole one stays
    assert deps.publish(root, key, replace=True) == first and manifest_id() != was  # the unreadable one goes
    assert sorted(p.name for p in (tmp_path / "share").iterdir()) == [key]  # nothing temporary left
    out = tmp_path / "disk" / key
    assert deps.extract(first, out, key) and (out / "lib" / "m19.py").read_text() == "X = 19\n" * 100
