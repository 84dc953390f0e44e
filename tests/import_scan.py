"""Reading a module's imports from its source (nothing is run), for the layout tests:
``test_boundaries`` (what may import what), ``test_cli_layout`` and ``test_ui_layout`` (no
import circles, command modules import only the core)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
        or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, root: Path = REPO, *, runtime_only: bool = False) -> set[str]:
    """Every module ``path`` imports, absolute: lazy imports inside functions included, and
    ``importlib.import_module("...")``/``__import__("...")`` with a literal name. With
    ``runtime_only``, ``if TYPE_CHECKING:`` blocks are left out (they never run)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if runtime_only and _type_checking_only(node):
            for child in getattr(node, "orelse", []):
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from .. import local`
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def import_edges(modules: dict[str, Path], root: Path = REPO, *,
                 runtime_only: bool = False) -> dict[str, set[str]]:
    """module -> the modules of ``modules`` it imports: each import counts for the longest
    module name it names, so ``from ._output import error`` is an edge to ``_output``, not to
    the package."""
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports(path, root, runtime_only=runtime_only):
            owners = [m for m in modules if imported == m or imported.startswith(m + ".")]
            if owners:
                targets.add(max(owners, key=len))
        edges[name] = targets - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each distinct import circle once, as the path that closes it."""
    found, seen = [], set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle + [nxt])
            else:
                walk(nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return found
