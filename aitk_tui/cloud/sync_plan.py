"""What deploy uploads: the files of ``inference_server/`` it selects, and why it skips others.

Selection rules (all checked before anything is uploaded):

- Junk and secrets are skipped by default (``DEFAULT_IGNORE``: VCS folders, ``.env``,
  keys and credential stores in any case, caches, virtual environments, editor folders); a
  gitignore-syntax ``.aitkignore``
  in the folder adds patterns, and ``!pattern`` re-includes a default one. Matching is
  ``pathspec``'s ``GitIgnoreSpec`` (git's own semantics), never a hand-written matcher.
- A symbolic link whose target lies outside the folder stops the deploy, naming the link:
  following it could upload ``~/.ssh/id_rsa``; skipping it would deploy a server missing a
  file the user meant to ship. A link to a file inside the folder uploads that file's
  content; a link to a folder is not followed (cycles) and is reported as skipped.
- A name Azure Files refuses (see :mod:`aitk_tui.config.share_names`), or two names that
  differ only in case, stop the deploy naming the file.
- Files larger than ``warn_bytes`` are uploaded with a warning (a stray dataset or
  checkpoint is the usual cause of a slow deploy).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.share_names import MAX_DEPTH, MAX_PATH, component_problem, path_problem
from ..errors import AitkError

IGNORE_FILE = ".aitkignore"
DEFAULT_WARN_BYTES = 20 * 1024 * 1024
CHUNK = 1 << 20
# Credentials, matched in any case (``ID_RSA``, ``SERVER.KEY`` and ``.ENV`` are the same secrets
# on a case-insensitive file system, and people write them so): keys, dotenv files, the
# credential stores of git, npm, PyPI, AWS, Azure, Google Cloud, Kubernetes, Docker, ssh, gpg.
SECRET_IGNORE = (
    ".env", ".env.*", "*.key", "*.pem", "*.pfx", "*.p12", "*.ppk", "*.jks", "*.keystore", "*.kdbx",
    "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*", ".netrc", "_netrc", ".git-credentials", ".npmrc",
    ".pypirc", ".pgpass", ".htpasswd", ".boto", ".s3cfg", ".dockercfg", "*.tfstate", "*.tfstate.*",
    ".ssh/", ".gnupg/", ".aws/", ".azure/", ".kube/", ".docker/", "gcloud/",
)


def _any_case(pattern: str) -> str:
    """A gitignore pattern matching ``pattern`` in any case: each letter as ``[xX]``."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in pattern)


DEFAULT_IGNORE = (
    # version control and editors
    ".git", ".hg", ".svn", ".idea/", ".vscode/", "*.swp", "*~", ".DS_Store", "Thumbs.db",
    # secrets
    *(_any_case(p) for p in SECRET_IGNORE),
    # caches and environments
    "__pycache__/", "*.pyc", "*.pyo", ".venv/", "venv/", "node_modules/", ".mypy_cache/",
    ".pytest_cache/", ".ruff_cache/", ".ipynb_checkpoints/", ".tox/",
)


@dataclass(frozen=True)
class LocalFile:
    rel: str  # share path, forward slashes: "inference_server/app.py"
    path: Path  # what is read: the file itself, or the target of a link inside the folder
    size: int
    sha256: str


@dataclass(frozen=True)
class Skipped:
    rel: str  # share path; a folder ends with "/"
    reason: str  # "ignored", "link to a folder", "broken link", "not a regular file"


@dataclass
class Selection:
    files: dict[str, LocalFile] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    large: list[LocalFile] = field(default_factory=list)


def format_size(n: int) -> str:
    """``1 B``, ``1.2 KB``, ``20.0 MB``: one unit style for every size aitk prints."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TB"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def load_ignore(base: Path) -> Any:
    """The defaults plus ``base/.aitkignore`` as one ``pathspec.GitIgnoreSpec``."""
    import pathspec

    lines = list(DEFAULT_IGNORE)
    path = base / IGNORE_FILE
    if path.is_symlink():
        # A link is read where it points, but only inside the folder: a link out of it would
        # let the rules (what stays private) come from a file the project does not hold.
        target = os.path.realpath(path)
        if not _inside(target, os.path.realpath(base)):
            raise AitkError(f"{base.name}/{IGNORE_FILE} is a link to {target}, outside {base.name}/; nothing was "
                            "uploaded.", f"replace the link with the file itself, or point it at a file inside "
                            f"{base.name}/")
        if not os.path.isfile(target):
            raise AitkError(f"{base.name}/{IGNORE_FILE} is a link to {target}, which is not a file; nothing was "
                            "uploaded.", "fix or remove the link")
    if path.is_file():
        try:
            lines += path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise AitkError(f"{IGNORE_FILE} in {base.name}/ could not be read.", str(e)) from None
    try:
        return _Ignore(pathspec.GitIgnoreSpec.from_lines(lines))
    except (ValueError, TypeError) as e:  # GitWildMatchPatternError is a ValueError
        raise AitkError(f"{IGNORE_FILE} in {base.name}/ has a pattern that is not valid.", str(e)) from None


class _Ignore:
    """``GitIgnoreSpec.match_file`` with a quick "no pattern could ignore this" answer first:
    most files match nothing, and the spec's own loop costs ~0.2 ms a file."""

    def __init__(self, spec: Any) -> None:
        import re

        self.spec = spec
        include = [p.regex for p in spec.patterns if p.include and getattr(p, "regex", None) is not None]
        try:  # one alternation is one pass in C (group names repeat across patterns: drop them)
            any_of = re.compile("|".join(f"(?:{re.sub(r'[(][?]P<[^>]+>', '(?:', rx.pattern)})" for rx in include)
                                or "(?!)")
            self._could_match = lambda path: any_of.match(path) is not None
        except re.error:
            self._could_match = lambda path: any(rx.match(path) for rx in include)

    def match_file(self, path: str) -> bool:
        return self._could_match(path) and bool(self.spec.match_file(path))


def _inside(target: str, base_real: str) -> bool:
    return target == base_real or target.startswith(base_real.rstrip(os.sep) + os.sep)


def select(root: Path, folder: str = "inference_server", hash_cache: dict[str, list[Any]] | None = None,
           warn_bytes: int | None = DEFAULT_WARN_BYTES, dest: str | None = None) -> Selection:
    """The files under ``root/folder`` to sync, keyed by share path (see module doc).

    ``dest`` is the share folder they go to (default: ``folder``, at the share root), e.g.
    ``models/sql/adapter`` for an adapter uploaded from anywhere on disk.

    Raises :class:`AitkError` naming the file for a link that leaves the folder or a name
    Azure Files refuses. ``hash_cache`` ({rel: [size, mtime_ns, sha256]}) lets an unchanged
    file skip hashing (size and nanosecond mtime both equal, as rsync assumes); it is
    updated in place.
    """
    base = Path(root) / folder
    base_real = os.path.realpath(base)
    spec = load_ignore(base)
    sel = Selection()
    fresh: dict[str, list[Any]] = {}
    folded: dict[str, str] = {}

    prefix = (dest or folder).strip("/")

    def share_rel(local_rel: str) -> str:
        return f"{prefix}/{local_rel}" if local_rel else prefix

    def check_name(local_rel: str) -> None:
        rel = share_rel(local_rel)
        # The folders above were checked when they were walked: only the last name is new.
        why = component_problem(rel.rsplit("/", 1)[-1]) or (path_problem(rel) if len(rel) > MAX_PATH
                                                             or rel.count("/") > MAX_DEPTH else None)
        if why:
            raise AitkError(f"{rel!r} cannot be stored on Azure Files: {why}.",
                            f"rename it, or add it to {folder}/{IGNORE_FILE}")
        other = folded.setdefault(rel.casefold(), rel)
        if other != rel:
            raise AitkError(f"{other!r} and {rel!r} differ only in case; Azure Files would store them as one.",
                            f"rename one, or add it to {folder}/{IGNORE_FILE}")

    def escaping(path: str, local_rel: str) -> None:
        target = os.path.realpath(path)
        if not _inside(target, base_real):
            raise AitkError(f"{share_rel(local_rel)} is a link to {target}, outside {folder}/: aitk does not "
                            "follow links out of the folder it uploads.",
                            f"copy the file into {folder}/ if it belongs there, or add the link to "
                            f"{folder}/{IGNORE_FILE}; nothing was uploaded")

    for dirpath, dirnames, filenames in os.walk(base):
        here = os.path.relpath(dirpath, base)
        here = "" if here == "." else here.replace(os.sep, "/")
        keep = []
        for d in sorted(dirnames):
            local_rel = f"{here}/{d}" if here else d
            full = os.path.join(dirpath, d)
            if spec.match_file(local_rel + "/"):
                sel.skipped.append(Skipped(share_rel(local_rel) + "/", "ignored"))
            elif os.path.islink(full):
                escaping(full, local_rel)
                sel.skipped.append(Skipped(share_rel(local_rel) + "/", "link to a folder"))
            else:
                check_name(local_rel)
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            local_rel = f"{here}/{name}" if here else name
            full = os.path.join(dirpath, name)
            if spec.match_file(local_rel):
                sel.skipped.append(Skipped(share_rel(local_rel), "ignored"))
                continue
            path = Path(full)
            if os.path.islink(full):
                if not os.path.exists(full):
                    sel.skipped.append(Skipped(share_rel(local_rel), "broken link"))
                    continue
                escaping(full, local_rel)
                path = Path(os.path.realpath(full))
                if path.is_dir():
                    sel.skipped.append(Skipped(share_rel(local_rel), "link to a folder"))
                    continue
            try:
                st = path.stat()
            except OSError:
                continue  # removed while scanning
            if not stat.S_ISREG(st.st_mode):
                sel.skipped.append(Skipped(share_rel(local_rel), "not a regular file"))
                continue
            check_name(local_rel)
            rel = share_rel(local_rel)
            cached = (hash_cache or {}).get(rel)
            if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [st.st_size, st.st_mtime_ns]:
                digest = str(cached[2])
            else:
                digest = _sha256(path)
            fresh[rel] = [st.st_size, st.st_mtime_ns, digest]
            f = LocalFile(rel, path, st.st_size, digest)
            sel.files[rel] = f
            if warn_bytes is not None and st.st_size > warn_bytes:
                sel.large.append(f)
    if hash_cache is not None:
        hash_cache.clear()
        hash_cache.update(fresh)
    return sel


def scan(root: Path, folder: str = "inference_server",
         hash_cache: dict[str, list[Any]] | None = None) -> dict[str, LocalFile]:
    """Only the selected files of :func:`select`."""
    return select(root, folder, hash_cache, warn_bytes=None).files


def skipped_text(skipped: list[Skipped], limit: int = 8) -> str:
    """``inference_server/.git/ (ignored), …`` for the log: at most ``limit`` names."""
    names = [f"{s.rel} ({s.reason})" for s in skipped[:limit]]
    more = len(skipped) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


# -- the share's manifest, as read back ---------------------------------------------------
def _plain_share_path(rel: Any) -> bool:
    """'a/b/c.py': no '\\', no empty, '.' or '..' segment, no control character."""
    return (isinstance(rel, str) and "\\" not in rel and not any(ord(c) < 32 for c in rel)
            and all(part not in ("", ".", "..") for part in rel.split("/")))


def checked_manifest(files: dict[str, Any] | None) -> tuple[dict[str, dict[str, Any]] | None, list[str]]:
    """(the entries that name a plain share path, the others): an entry with '..' or '\\' names no
    file aitk uploaded, and acting on it (deleting it) would fail every later deploy."""
    if files is None:
        return None, []
    good = {k: v for k, v in files.items() if _plain_share_path(k) and isinstance(v, dict)}
    return good, sorted(str(k) for k in files if k not in good)
