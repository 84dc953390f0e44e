"""Names are imported from the modules that define them, not through re-exports (issue 20).

A re-export (``from .b import X`` in ``a``, kept so that ``from a import X`` works, often
with ``# noqa: F401``) hides where ``X`` lives and ties ``a``'s importers to ``b`` through
``a``. Checked from the source as ``test_boundaries.py`` checks the layers: every
``from M import X`` (and ``M.X`` on an imported module) in the project, its tests and its
benchmarks names a module of the project that binds ``X`` itself (a def, a class, an
assignment) or has a submodule ``X``. A package's ``__init__`` that declares ``__all__``
is a public face and may re-export what it lists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.import_scan import REPO, module_name

PACKAGES = ("aitk_tui", "inference_server")
IMPORTERS = (*PACKAGES, "tests", "benchmarks")

# (module imported through, name): re-exports still used. Empty since issue 20's UI move;
# it may only shrink, so a new re-export is refused: import the name from its home.
REEXPORTS_LEFT: set[tuple[str, str]] = set()
# Files whose ``from ... import ...  # noqa: F401`` lines were still there (same rule).
NOQA_REEXPORTS_LEFT: set[str] = set()


def _top_level(tree: ast.Module):
    """The statements that run at import (into if/try/with/for blocks, not into functions)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            stack += node.body + node.orelse if hasattr(node, "orelse") else node.body
            stack += [s for h in getattr(node, "handlers", ()) for s in h.body]
            stack += getattr(node, "finalbody", [])


class Module:
    """What one module binds itself, and what its ``__all__`` declares."""

    def __init__(self, path: Path):
        self.path = path
        self.defined: set[str] = set()
        self.declared: set[str] = set()
        for node in _top_level(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
                continue
            targets = {ast.Assign: lambda n: n.targets, ast.AnnAssign: lambda n: [n.target],
                       ast.AugAssign: lambda n: [n.target], ast.For: lambda n: [n.target],
                       ast.With: lambda n: [i.optional_vars for i in n.items if i.optional_vars]}
            for kind, get in targets.items():
                if isinstance(node, kind):
                    self.defined |= {x.id for t in get(node) for x in ast.walk(t) if isinstance(x, ast.Name)}
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                self.declared = {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)}

    def gives(self, name: str) -> bool:
        return name in self.defined or (self.path.name == "__init__.py" and name in self.declared)


def project_modules(root: Path = REPO) -> dict[str, Module]:
    return {module_name(p, root): Module(p) for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def reexports_used(path: Path, modules: dict[str, Module], root: Path = REPO) -> set[tuple[str, str, str]]:
    """(importer, module, name) for each name ``path`` takes from a project module that does
    not bind it: ``from M import X`` (lazy imports included) and ``M.X`` on an imported module."""
    me = module_name(path, root)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: set[tuple[str, str, str]] = set()

    def check(module: str, name: str) -> None:
        if name.startswith("__"):  # a module's own attributes (__path__, __file__)
            return
        if module in modules and not modules[module].gives(name) and f"{module}.{name}" not in modules:
            found.add((me, module, name))

    def scope(body: ast.AST, outer: dict[str, str]) -> None:
        """One function's (or the module's) names: a module imported here or outside, unless
        this scope binds the same name to something else (``app = tmp_path / "app.py"``)."""
        aliases, nested, nodes = dict(outer), [], []
        stack = list(ast.iter_child_nodes(body))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                nested.append(node)
                continue
            nodes.append(node)
            stack += ast.iter_child_nodes(node)
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    if alias.name != "*":
                        check(module, alias.name)
                        if f"{module}.{alias.name}" in modules:
                            aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules:
                        aliases[alias.asname] = alias.name
        bound = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if isinstance(body, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            bound |= {a.arg for a in ast.walk(body.args) if isinstance(a, ast.arg)}
        for name in bound:
            aliases.pop(name, None)
        for node in nodes:
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                check(aliases[node.value.id], node.attr)
        for node in nested:
            scope(node, aliases)

    scope(ast.parse(path.read_text(encoding="utf-8"), str(path)), {})
    return found


NOQA_F401 = re.compile(r"#\s*noqa:[^#\n]*\bF401\b")


def noqa_reexports(path: Path) -> list[int]:
    """Lines of ``from M import X  # noqa: F401``: a name imported only to be taken from here.
    (``import pkg  # noqa: F401`` imports for a side effect, and stays allowed.)"""
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines), str(path))
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                  and any(NOQA_F401.search(lines[i - 1]) for i in range(node.lineno, node.end_lineno + 1)))


# -- the rules -------------------------------------------------------------------------------------
def test_names_are_imported_from_the_modules_that_define_them():
    modules, found = project_modules(), set()
    for top in IMPORTERS:
        for path in sorted((REPO / top).rglob("*.py")):
            found |= reexports_used(path, modules)
    left = {(module, name) for _, module, name in found}
    assert sorted(f"{me} takes {name} from {module}" for me, module, name in found
                  if (module, name) not in REEXPORTS_LEFT) == [], "import the name from the module that defines it"
    assert sorted(REEXPORTS_LEFT - left) == [], "no longer imported through a re-export: take it out of REEXPORTS_LEFT"


def test_no_module_keeps_a_reexport_for_old_import_paths():
    problems = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if path.name == "__init__.py" and Module(path).declared:
                continue  # a package's declared public face
            problems += [f"{rel}:{line}" for line in noqa_reexports(path) if rel not in NOQA_REEXPORTS_LEFT]
    assert problems == []
    still = {f for f in NOQA_REEXPORTS_LEFT if noqa_reexports(REPO / f)}
    assert sorted(NOQA_REEXPORTS_LEFT - still) == [], "no re-export left there: take it out of NOQA_REEXPORTS_LEFT"


# -- the scanner itself ----------------------------------------------------------------------------
def test_the_scan_sees_imports_through_a_reexport(tmp_path):
    pkg = tmp_path / "aitk_tui"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .home import Thing\n__all__ = ['Thing']\n")
    (pkg / "sub" / "__init__.py").write_text("from ..home import Thing\n")   # no __all__: not a face
    (pkg / "home.py").write_text("class Thing: ...\nLIMIT = 3\nif True:\n    def helper(): ...\n")
    (pkg / "relay.py").write_text("from .home import LIMIT, Thing  # noqa: F401\n")
    (pkg / "user.py").write_text(
        "from .home import LIMIT, helper\n"       # the defining module: fine
        "from . import Thing, home\n"             # a package's declared face, a submodule: fine
        "from .relay import Thing as T\n"         # through a re-export
        "import aitk_tui.relay as relay\n"
        "relay.LIMIT\n"                           # the same, as an attribute
        "home.LIMIT\n"
        "def later():\n"
        "    from .sub import Thing\n"            # lazily, through a package without __all__
        "def shadowed(relay):\n"
        "    relay.Anything\n"                    # an argument, not the module
        "def local():\n"
        "    home = object()\n"
        "    home.Anything\n")
    modules = project_modules(tmp_path)
    assert reexports_used(pkg / "user.py", modules, tmp_path) == {
        ("aitk_tui.user", "aitk_tui.relay", "Thing"),
        ("aitk_tui.user", "aitk_tui.relay", "LIMIT"),
        ("aitk_tui.user", "aitk_tui.sub", "Thing"),
    }
    assert noqa_reexports(pkg / "relay.py") == [1] and noqa_reexports(pkg / "user.py") == []
