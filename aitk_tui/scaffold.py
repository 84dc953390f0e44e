"""``aitk init``: write ``infra/`` and ``inference_server/`` into a project folder.

Only what aitk ships is written, never the working state of a project: the files a
project edits (the parameters and ``inference.config.json``) come from the pristine copies
in ``aitk_tui/templates/``; the code (``inference.bicep``, ``inference.json``,
``inference_server/``) from ``aitk_tui/_template`` in a wheel, or the source tree in an
editable install. A file the user changed is never overwritten: init
remembers the hash of what it wrote (``.aitk/init.json``); a file that still has that hash
may be refreshed with the shipped version, any other difference is reported as a
conflict and left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AitkError
from .fsutil import FileWriteError, atomic_write_bytes, atomic_write_json

SHIPPED_DIRS = ("infra", "inference_server")
# Files that aitk itself edits in a project: taken from TEMPLATES, so that the aitk
# checkout's own (possibly used) infra/ never leaks into a new project.
USER_FILES = ("infra/inference.config.json", "infra/provision/inference.parameters.json")
TEMPLATES = Path(__file__).resolve().parent / "templates"
_SKIP_PARTS = {"__pycache__", ".pytest_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass
class InitReport:
    written: list[str] = field(default_factory=list)  # new files
    updated: list[str] = field(default_factory=list)  # unchanged by the user, refreshed to the shipped version
    kept: list[str] = field(default_factory=list)  # already identical to the shipped file
    conflicts: list[str] = field(default_factory=list)  # changed by the user: left alone

    def summary(self) -> str:
        n = len(self.written)
        parts = [f"wrote {n} file{'' if n == 1 else 's'}"]
        if self.updated:
            parts.append(f"updated {len(self.updated)}")
        parts.append(f"{len(self.kept)} already up to date")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} changed by you and left alone")
        return ", ".join(parts)


def template_root() -> Path:
    """Folder holding the shipped ``infra/`` and ``inference_server/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_template", here.parent):
        if all((candidate / d).is_dir() for d in SHIPPED_DIRS):
            return candidate
    raise AitkError("The project template is not installed with aitk.", f"looked in {here / '_template'} and {here.parent}")


def shipped_files(root: Path | None = None) -> dict[str, Path]:
    """Project-relative name -> file to copy. ``root``: a complete template tree to use as
    it is (tests); by default the installed code plus the pristine :data:`TEMPLATES`."""
    pristine = root is None
    root = root or template_root()
    out: dict[str, Path] = {}
    for d in SHIPPED_DIRS:
        for path in sorted((root / d).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not (_SKIP_PARTS & set(rel.parts)) and path.suffix not in _SKIP_SUFFIXES:
                out[rel.as_posix()] = path
    if pristine:
        for rel in USER_FILES:
            src = TEMPLATES / rel
            if not src.is_file():
                raise AitkError("The project template is not installed with aitk.", f"{src} is missing")
            out[rel] = src
        out = dict(sorted(out.items()))
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _links_on_the_way(dest: Path, rels: list[str]) -> list[str]:
    """Project-relative paths among ``rels`` (and their folders, and .aitk/) that are symbolic
    links, dangling ones included: a write there would land wherever the link points."""
    links: list[str] = []
    seen: set[str] = set()
    for rel in rels:
        parts = Path(rel).parts
        for i in range(1, len(parts) + 1):
            sub = Path(*parts[:i]).as_posix()
            if sub in seen:
                continue
            seen.add(sub)
            if (dest / sub).is_symlink():
                links.append(sub)
                break
    return links


def init_project(dest: Path, *, source: Path | None = None) -> InitReport:
    dest = Path(dest).resolve()
    src_root = source or template_root()
    if dest == src_root.resolve():
        raise AitkError("Cannot initialise the aitk source tree itself.", str(dest))
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FileWriteError(dest, e) from None
    files = shipped_files(source)
    links = _links_on_the_way(dest, [*files, ".aitk/init.json", ".aitk/.gitignore"])
    if links:
        shown = ", ".join(f"{rel} (-> {os.readlink(dest / rel)})" for rel in links)
        raise AitkError(f"aitk init does not write through symbolic links inside the project: {shown}.",
                        "nothing was written; replace each link with a real file or folder (or remove it) and "
                        "run aitk init again")
    record_path = dest / ".aitk" / "init.json"
    try:
        record: dict[str, str] = json.loads(record_path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            record = {}
    except (OSError, ValueError):
        record = {}

    report = InitReport()
    for rel, src in files.items():
        data = src.read_bytes()
        target = dest / rel
        new_hash = _sha(data)
        if target.exists():
            current = _sha(target.read_bytes())
            if current == new_hash:
                report.kept.append(rel)
                record[rel] = new_hash
                continue
            if record.get(rel) != current:
                report.conflicts.append(rel)
                continue
            report.updated.append(rel)
        else:
            report.written.append(rel)
        atomic_write_bytes(target, data)
        record[rel] = new_hash

    gitignore = dest / ".aitk" / ".gitignore"
    gitignore.parent.mkdir(parents=True, exist_ok=True)
    if not gitignore.exists():
        gitignore.write_text("# aitk's local state (local cloud, remembered choices): not for version control\n*\n")
    atomic_write_json(record_path, record)
    return report
