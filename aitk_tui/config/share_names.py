"""Azure Files' naming rules for directories and files, shared by deploy and the local cloud.

From "Naming and referencing shares, directories, files, and metadata" (Azure Storage
REST docs): a component is at most 255 characters, a path at most 2,048, at most 250
directories deep; ``" \\ / : | < > * ?`` and control characters (0x00-0x1F, and the C1
range) are not allowed; ``.``/``..`` and the DOS device names are reserved. SMB also
refuses names that end with a dot or a space, so a share mounted by a container would
not show them: we refuse them too. Names are case-insensitive (case-preserving), so two
names that differ only in case are one file on the share. Share names follow DNS rules.
"""

from __future__ import annotations

import re

from .naming import NameError_, file_share_name, storage_account_name

MAX_COMPONENT = 255
MAX_PATH = 2048
MAX_DEPTH = 250
_FORBIDDEN = set('"\\/:|<>*?')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RESERVED = {"con", "prn", "aux", "nul", "clock$", *(f"com{i}" for i in range(1, 10)),
             *(f"lpt{i}" for i in range(1, 10))}


_ANY_BAD = re.compile(r'["\\/:|<>*?\x00-\x1f\x7f-\x9f\ud800-\udfff]')


def component_problem(name: str) -> str | None:
    """Why Azure Files refuses ``name`` as one directory or file name (None when it is fine)."""
    # Fast path: deploy checks every file name of a project.
    if (0 < len(name) <= MAX_COMPONENT and not _ANY_BAD.search(name) and name[-1] not in ". "
            and name.lower() not in _RESERVED):
        return None
    if not name:
        return "an empty name is not allowed"
    if name in (".", ".."):
        return f"{name!r} is reserved"
    if len(name) > MAX_COMPONENT:
        return f"a name may be at most {MAX_COMPONENT} characters (this one has {len(name)})"
    bad = sorted({c for c in name if c in _FORBIDDEN})
    if bad:
        return "the character" + ("s " if len(bad) > 1 else " ") + " ".join(repr(c) for c in bad) + \
            (" are" if len(bad) > 1 else " is") + " not allowed in a name"
    control = _CONTROL.search(name)
    if control:
        return f"the control character {control.group()!r} is not allowed in a name"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "the name is not valid Unicode (a lone surrogate)"
    if name.endswith((".", " ")):
        return "a name may not end with a dot or a space"
    if name.lower() in _RESERVED:
        return f"{name!r} is a reserved device name"
    return None


def path_problem(rel: str) -> str | None:
    """Why Azure Files refuses the share path ``rel`` ("a/b/c.py"); None when it is fine."""
    if len(rel) > MAX_PATH:
        return f"a path may be at most {MAX_PATH} characters (this one has {len(rel)})"
    parts = rel.split("/")
    if len(parts) - 1 > MAX_DEPTH:
        return f"a path may be at most {MAX_DEPTH} folders deep"
    for part in parts:
        why = component_problem(part)
        if why:
            return why
    return None


def share_name_ok(name: str) -> bool:
    """A valid file share name (the parameters' rule: DNS-like, 3-63 characters)."""
    try:
        file_share_name(name)
    except NameError_:
        return False
    return True


def account_name_ok(name: str) -> bool:
    """A valid storage account name: 3-24 lowercase letters and digits."""
    try:
        storage_account_name(name)
    except NameError_:
        return False
    return True
