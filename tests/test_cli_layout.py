"""The shape of the ``aitk`` command (issue 20), checked from the source as
``test_boundaries.py`` checks the layers: ``aitk_tui/cli/`` is a small core (``_output``,
``_printer``, ``_session``) and one module per command group; command modules import only
the core; no module imports another's private names; the CLI reaches the back-end only
through :class:`aitk_tui.backend.Backend`; the TUI never imports the CLI; and every row of
the command table builds its parser and answers ``--help``."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

from tests.import_scan import REPO, cycles, import_edges, imports, module_name
from tests.test_boundaries import offenders

CLI = REPO / "aitk_tui" / "cli"
CORE = {"_output", "_printer", "_session"}


def _cli_modules(root: Path = REPO) -> dict[str, Path]:
    """Every module of the CLI, in either layout: ``aitk_tui/cli*.py`` (before issue 20) or
    the package ``aitk_tui/cli/``."""
    paths = list((root / "aitk_tui").glob("cli*.py")) + list((root / "aitk_tui" / "cli").glob("*.py"))
    return {module_name(p, root): p for p in sorted(paths)}


# -- the package ------------------------------------------------------------------------------
def test_the_cli_is_a_core_and_one_module_per_command_group():
    assert CLI.is_dir(), "aitk_tui/cli/ is a package"
    from aitk_tui.cli import COMMANDS

    names = [row.name for row in COMMANDS]
    assert len(names) == len(set(names)), "one row per command"
    modules = {p.stem for p in CLI.glob("*.py")} - {"__init__"}
    assert CORE <= modules
    assert {row.module for row in COMMANDS} == modules - CORE, "every command module is in the table, and only those"


def test_command_modules_import_only_the_core():
    assert CLI.is_dir(), "aitk_tui/cli/ is a package"
    problems = []
    for path in sorted(CLI.glob("*.py")):
        if path.stem == "__init__":
            continue
        allowed = {f"aitk_tui.cli.{m}" for m in CORE}
        for target in sorted(import_edges(_cli_modules())[module_name(path)]):
            if target not in allowed:
                problems.append(f"{path.name} imports {target}")
        # the core never reaches up into the table or a command
        if path.stem in CORE and "aitk_tui.cli" in imports(path, REPO):
            problems.append(f"{path.name} imports aitk_tui.cli")
    assert problems == []


def test_no_import_circle_among_the_cli_modules():
    modules = _cli_modules()
    assert "aitk_tui.cli" in modules
    assert cycles(import_edges(modules)) == []


def test_the_cycle_finder_sees_a_lazy_circle(tmp_path):
    pkg = tmp_path / "aitk_tui"
    pkg.mkdir()
    (pkg / "cli.py").write_text("def f():\n    from . import cli_cloud\n")
    (pkg / "cli_cloud.py").write_text("from .cli import EXIT_OK\n")
    (pkg / "cli_params.py").write_text("from .cli import EXIT_OK\n")
    modules = _cli_modules(tmp_path)
    assert cycles(import_edges(modules, tmp_path)) == [["aitk_tui.cli", "aitk_tui.cli_cloud", "aitk_tui.cli"]]


# -- private names ---------------------------------------------------------------------------------
# (importer, module, name): the private names that crossed a module when this test was
# written, outside the CLI. This list may only shrink: make a name public (or move the code
# that uses it next to it) and take its line out.
PRIVATE_CROSSINGS_LEFT: set[tuple[str, str, str]] = set()
PACKAGES = ("aitk_tui", "inference_server")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def private_crossings(path: Path, root: Path = REPO) -> set[tuple[str, str, str]]:
    """The private names ``path`` takes from another module of the project: ``from M import
    _x``, ``M._x`` on an imported module, and a private module (``pkg._m``) imported from
    outside ``pkg``. (Private attributes of objects are not seen: that needs types.)"""
    me = module_name(path, root)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found, modules = set(), {}

    def private_module(target: str) -> bool:
        parts = target.split(".")
        return any(_private(p) and not _inside(me, ".".join(parts[:i])) for i, p in enumerate(parts))

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.split(".")[0] not in PACKAGES:
                continue
            if private_module(module):
                found.add((me, module, "(module)"))
            for alias in node.names:
                if _private(alias.name) and not _inside(me, module):
                    found.add((me, module, alias.name))
                modules[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    if private_module(alias.name):
                        found.add((me, alias.name, "(module)"))
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                        alias.name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr):
            target = modules.get(node.value.id)
            if target is not None and target != me:
                found.add((me, target, node.attr))
    return found


def test_no_private_name_crosses_a_module():
    found = set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found |= private_crossings(path)
    assert sorted(found - PRIVATE_CROSSINGS_LEFT) == [], "a private name used from another module"
    assert sorted(PRIVATE_CROSSINGS_LEFT - found) == [], "no longer crosses: take it out of PRIVATE_CROSSINGS_LEFT"


def test_the_private_name_scan_sees_imports_attributes_and_private_modules(tmp_path):
    probe = tmp_path / "aitk_tui" / "cli" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from ._output import error\n"           # a private module of its own package: fine
        "from ..cloud import _helpers\n"          # another package's private module
        "from ..cloud.session import _close\n"    # a private function
        "from .. import backend\n"
        "import aitk_tui.events as events\n"
        "backend._bridge\n"                       # a private name of an imported module
        "events.Done\n"
        "self_thing = object()\n")
    assert private_crossings(probe, tmp_path) == {
        ("aitk_tui.cli.probe", "aitk_tui.cloud", "_helpers"),
        ("aitk_tui.cli.probe", "aitk_tui.cloud.session", "_close"),
        ("aitk_tui.cli.probe", "aitk_tui.backend", "_bridge"),
    }


# -- through Backend ---------------------------------------------------------------------------------
# What the CLI may import from the back-end's package besides the contract: result types and
# pure helpers that take no session (formatting, validation of a request before any call).
CLOUD_NAMES_FOR_THE_CLI = {
    "aitk_tui.cloud.models": {"WhatIf"},
    "aitk_tui.cloud.operate": {"AppScale", "ScaleRequest", "Scaled"},
    "aitk_tui.cloud.models_upload": {"ShareModel", "UploadRequest"},
    "aitk_tui.cloud.endpoint_status": {"EndpointStatus", "age", "health_words"},
    "aitk_tui.cloud.logs": {"short_replica"},
    "aitk_tui.cloud.sync_plan": {"format_size"},
    "aitk_tui.cloud.prices": {"estimate_for_project"},
}


def _backend_members() -> set[str]:
    from aitk_tui.backend import Backend

    return {n for n in dir(Backend) if not n.startswith("_")} | set(Backend.__annotations__)


def test_the_cli_reaches_the_back_end_only_through_backend():
    """Every call of the back-end goes through a ``Backend`` method (``aitk down`` too): the
    CLI imports no operation module of ``aitk_tui.cloud`` and reads nothing off a session that
    the contract does not name (``session.factory`` is the back-end's own)."""
    members, problems = _backend_members(), []
    for me, path in _cli_modules().items():
        package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                if _inside(module, "aitk_tui.cloud"):
                    extra = sorted({a.name for a in node.names} - CLOUD_NAMES_FOR_THE_CLI.get(module, set()))
                    if extra:
                        problems.append(f"{path.name} imports {', '.join(extra)} from {module}")
            elif isinstance(node, ast.Import):
                problems += [f"{path.name} imports {a.name}" for a in node.names if _inside(a.name, "aitk_tui.cloud")]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "session" and node.attr not in members:
                problems.append(f"{path.name} reads session.{node.attr}, which Backend does not name")
    assert problems == []


def test_the_ui_never_imports_the_cli():
    assert CLI.is_dir(), "aitk_tui/cli/ is a package"
    assert offenders("ui", "aitk_tui.cli") == []


# -- the command table ---------------------------------------------------------------------------------
def test_every_row_of_the_table_builds_and_answers_help():
    from aitk_tui.cli import COMMANDS, main

    for row in COMMANDS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([row.name, "--help"]) == 0, row.name
        assert out.getvalue().startswith(f"usage: aitk {row.name} "), (row.name, out.getvalue()[:200])
        assert row.help.split()[0] in out.getvalue(), row.name


def test_the_whole_table_builds_without_the_back_end():
    """Building every row's parser loads no command's back-end (nor pydantic, httpx, the SDK)."""
    code = ("import sys, json; from aitk_tui.cli import build_parser; build_parser(); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {"azure", "torch", "textual", "httpx", "pydantic"} & {m.split(".")[0] for m in loaded}
    assert not {m for m in loaded if m.startswith(("aitk_tui.cloud", "aitk_tui.local", "aitk_tui.config"))}


def test_aitk_help_loads_no_command_module():
    code = ("import sys, json; from aitk_tui.cli import main; main(['--help']); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {m for m in loaded if m.startswith("aitk_tui.cli.")} <= {"aitk_tui.cli._output"}, sorted(loaded)
