"""The shape of the TUI (issue 20 section 2), checked from the source as ``test_cli_layout.py``
checks the CLI's: ``AitkApp`` is one class, not a class spread over mixins; the cloud
operations live on a main ``Screen``; the palette and the keys dispatch Textual actions, not
handlers found by a ``_cmd_<id>`` string; widgets receive what they show instead of reading
``app.state``; and the modules of ``ui/`` do not import each other in a circle at run time."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_scan import REPO, cycles, import_edges, module_name

UI = ("aitk_tui", "ui")


def _ui_files(root: Path = REPO) -> list[Path]:
    return sorted(root.joinpath(*UI).rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def ui_import_edges(root: Path = REPO) -> dict[str, set[str]]:
    """module of ui/ -> the modules of ui/ it imports at run time (``if TYPE_CHECKING:``
    blocks never run); a module's own package (its ``__init__``) is not counted."""
    modules = {module_name(p, root): p for p in _ui_files(root)}
    edges = import_edges(modules, root, runtime_only=True)
    return {name: {m for m in targets if not name.startswith(m + ".")} for name, targets in edges.items()}


def app_mixin_annotations(root: Path = REPO) -> list[str]:
    """Methods whose ``self`` is annotated as the app: the mark of a mixin of ``AitkApp``."""
    found = []
    for path in _ui_files(root):
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args:
                first = node.args.args[0]
                note = first.annotation
                text = note.value if isinstance(note, ast.Constant) else ast.unparse(note) if note else ""
                if first.arg == "self" and str(text).strip("'\"") == "AitkApp":
                    found.append(f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}")
    return found


def string_dispatch(root: Path = REPO) -> list[str]:
    """``getattr(self, "_cmd_" + ...)``-style lookups of a handler by a name built from a string
    (or any name not written out, on the app or ``self``), and methods named ``_cmd_*``."""
    found = []
    for path in _ui_files(root):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant) and (
                        isinstance(node.args[1], (ast.BinOp, ast.JoinedStr, ast.Call))
                        or isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "app")
                        or _is_app(node.args[0])):
                found.append(f"{rel}:{node.lineno} getattr({ast.unparse(node.args[1])})")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_cmd_"):
                found.append(f"{rel}:{node.lineno} def {node.name}")
    return sorted(found)


def _is_app(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "app" or isinstance(node, ast.Attribute) and node.attr == "app"


def widgets_reading_app_state(root: Path = REPO) -> list[str]:
    """``app.state`` / ``self.app.session`` read from a widget (or the palette's provider):
    they should be given what they show."""
    paths = sorted(root.joinpath(*UI, "widgets").rglob("*.py")) + \
        [p for p in [root.joinpath(*UI, "commands.py")] if p.exists()]
    found = []
    for path in paths:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr in ("state", "session") and _is_app(node.value):
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno} {ast.unparse(node)}")
    return sorted(set(found))


# -- the rules -------------------------------------------------------------------------------
def test_the_app_is_one_class_without_mixins():
    assert app_mixin_annotations() == []
    from textual.app import App

    from aitk_tui.ui.app import AitkApp

    ours = [c.__qualname__ for c in AitkApp.__mro__ if c.__module__.startswith("aitk_tui.ui") and c is not AitkApp]
    assert ours == [] and AitkApp.__bases__ == (App,), "AitkApp's bases are Textual's App only"


def test_the_cloud_operations_live_on_the_main_screen(tmp_path):
    from textual.screen import Screen

    from aitk_tui.project import Project
    from aitk_tui.ui.app import AitkApp
    from aitk_tui.ui.commands import COMMANDS

    main = AitkApp(Project(tmp_path)).get_default_screen()
    assert isinstance(main, Screen)
    for name in ("start_operation", "cancel_operation", "check_health", "ensure_pane", "show_tab"):
        assert callable(getattr(type(main), name, None)), name
        assert not hasattr(AitkApp, name), f"AitkApp.{name}: the main screen's, not the app's"
    on_screen = [c for c in COMMANDS if c.action.startswith("screen.")]
    assert on_screen and all(not hasattr(AitkApp, "action_" + c.action.split(".", 1)[1]) for c in on_screen)


def test_commands_dispatch_textual_actions_not_handlers_found_by_name():
    assert string_dispatch() == []


def test_widgets_never_read_the_app_state():
    assert widgets_reading_app_state() == []


def test_no_import_circle_among_the_ui_modules_at_run_time():
    edges = ui_import_edges()
    assert "aitk_tui.ui.app" in edges
    assert cycles(edges) == []


# -- the scans see what they look for --------------------------------------------------------------
def test_the_scans_see_a_mixin_a_string_dispatch_a_state_read_and_a_lazy_circle(tmp_path):
    ui = tmp_path / "aitk_tui" / "ui"
    (ui / "widgets").mkdir(parents=True)
    (ui / "app.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .widgets.pane import Pane\n"   # never runs: no edge
        "class A:\n"
        "    def run(self, id):\n        return getattr(self, '_cmd_' + id)()\n"
        "    def _cmd_go(self: 'AitkApp'):\n        from .mixin import M\n")
    (ui / "mixin.py").write_text("from .app import A\n")
    (ui / "widgets" / "pane.py").write_text(
        "class Pane:\n    def show(self):\n        return self.app.state.config, self.app.session\n")
    assert app_mixin_annotations(tmp_path) == ["aitk_tui/ui/app.py:7 _cmd_go"]
    assert string_dispatch(tmp_path) == ["aitk_tui/ui/app.py:6 getattr('_cmd_' + id)",
                                         "aitk_tui/ui/app.py:7 def _cmd_go"]
    assert widgets_reading_app_state(tmp_path) == ["aitk_tui/ui/widgets/pane.py:3 self.app.session",
                                                   "aitk_tui/ui/widgets/pane.py:3 self.app.state"]
    assert cycles(ui_import_edges(tmp_path)) == [["aitk_tui.ui.app", "aitk_tui.ui.mixin", "aitk_tui.ui.app"]]
