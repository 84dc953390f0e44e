"""The adapter list format, ``NAME=PATH,...``: parse and join. Standard library only.

What the server reads from ``--adapter`` (one value each) and from ``AITK_ADAPTER_PATH``
(the template joins the parameters' ``adapters`` list with commas):

- a single ``PATH``: one adapter, served under its folder's name (or ``--adapter-name``);
- ``NAME=PATH`` entries, separated by commas: each adapter served as model ``NAME``.

A name starts with a letter or digit and holds letters, digits, ``_ . : -`` (vLLM's
``--lora-modules`` shape), so ``./a=b`` and ``/x/a=b`` stay plain paths. A comma starts a
new entry only where ``NAME=`` follows, so commas inside paths survive.

This is the one module of ``inference_server`` that ``aitk_tui`` imports (the client checks
a list the way the server will read it); ``tests/test_boundaries.py`` keeps it so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple


class AdapterSpec(NamedTuple):
    """One ``--adapter``: ``name`` is its model id, None for "the folder's name"."""

    name: str | None
    path: Path


NAME = r"[A-Za-z0-9][\w.:-]*"
_NAMED = re.compile(rf"({NAME})=(.*)", re.DOTALL)
_NEXT_ENTRY = re.compile(rf",(?=\s*{NAME}=)")


def _one_adapter(value: Any) -> AdapterSpec:
    if isinstance(value, AdapterSpec):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return AdapterSpec(value[0], Path(value[1]))
    if isinstance(value, Path):
        return AdapterSpec(None, value)
    if not isinstance(value, str):
        raise ValueError(f"an adapter is NAME=PATH or PATH, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("an adapter entry is empty")
    named = _NAMED.fullmatch(text)
    if named is None:
        return AdapterSpec(None, Path(text))
    name, path = named.group(1), named.group(2).strip()
    if not path:
        raise ValueError(f"adapter `{name}` has no path (expected {name}=PATH)")
    return AdapterSpec(name, Path(path))


def parse_adapters(value: Any) -> list[AdapterSpec]:
    """``--adapter`` values (a list, one adapter each) or the environment's string: a single
    PATH, or a comma-separated list of NAME=PATH."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if _NAMED.fullmatch(text) is None:  # one path, commas and all
            return [AdapterSpec(None, Path(text))]
        return [_one_adapter(part) for part in _NEXT_ENTRY.split(text)]
    if isinstance(value, (Path, AdapterSpec)):
        return [_one_adapter(value)]
    return [_one_adapter(item) for item in value]


def join_adapters(specs: Iterable[AdapterSpec | tuple[str | None, Any] | str]) -> str:
    """The one string ``parse_adapters`` reads back as ``specs``: a lone unnamed PATH as it is,
    else NAME=PATH entries joined by commas (an unnamed entry among others could not be told
    apart from the path before it, so it is refused)."""
    items = [_one_adapter(s) for s in specs]
    if len(items) == 1 and items[0].name is None:
        return str(items[0].path)
    unnamed = [str(s.path) for s in items if s.name is None]
    if unnamed:
        raise ValueError(f"in a list of adapters every entry needs a NAME= ({', '.join(unnamed)} has none)")
    return ",".join(f"{s.name}={s.path}" for s in items)
