"""Atomic file writes for files the user owns (parameters, config, state).

A write either replaces the file whole or leaves the old one in place: the new bytes go
to a temp file in the same folder, are fsynced, then renamed over the original. A write
that fails (read-only folder, full disk, ...) raises :class:`FileWriteError`, which is
both an ``OSError`` (for callers that handle those) and an ``AitkError`` whose message
says in one sentence what happened.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import AitkError

_REASONS = {
    errno.EACCES: "the folder is read-only",
    errno.EPERM: "the folder is read-only",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file is too large for the file system",
}


class FileWriteError(AitkError, OSError):
    """A file could not be written; the previous file (if any) is unchanged."""

    def __init__(self, path: Path, exc: OSError) -> None:
        reason = _REASONS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).rstrip(".").lower()
        super().__init__(f"Cannot write {shown_path(path)}: {reason}.", f"{type(exc).__name__}: {exc}")
        self.errno, self.strerror, self.filename = exc.errno, exc.strerror, str(path)


def shown_path(path: Path | str) -> str:
    """``path`` relative to the current folder when it lies under it (shorter in messages)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The original file's permission bits are kept, and a symlink stays a symlink (its target
    is replaced). Raises :class:`FileWriteError`.
    """
    path = Path(path)
    if path.is_symlink():  # write through the link (as editors do) instead of replacing it with a file
        path = path.resolve()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)  # the rename itself survives a power cut
    except FileWriteError:
        raise
    except OSError as e:
        raise FileWriteError(path, e) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` of ``text`` (written as given: no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
