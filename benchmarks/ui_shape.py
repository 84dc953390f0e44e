"""The TUI's shape in figures, for a checkout (issue 20 section 2's before/after table).

    python benchmarks/ui_shape.py [CHECKOUT]      (default: this one)

Prints, for ``aitk_tui/ui/``: its modules and lines, the import circles among them at run time
(lazy imports included, ``if TYPE_CHECKING`` blocks left out), the private names that cross a
module, the ``self: "AitkApp"`` annotations of mixins, how commands are dispatched (handlers
found by a ``_cmd_`` string, or Textual ``action_*`` methods), and the widgets' reads of
``app.state``. Reads the source only; nothing is imported from the checkout.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from benchmarks.cli_shape import _strongly_connected  # noqa: E402
from tests.import_scan import cycles  # noqa: E402
from tests.test_cli_layout import private_crossings  # noqa: E402
from tests.test_ui_layout import (  # noqa: E402
    _ui_files,
    app_mixin_annotations,
    string_dispatch,
    ui_import_edges,
    widgets_reading_app_state,
)


def private_attribute_reads(root: Path) -> list[str]:
    """``x._name`` in ui/ where ``x`` is not ``self``/``cls``/``super()``: another object's private
    field (ours, or Textual's: the scan cannot tell types apart)."""
    found = []
    for path in _ui_files(root):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                value = node.value
                if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                    continue
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "super":
                    continue
                found.append(f"{path.stem}:{ast.unparse(node)[-40:]}")
    return sorted(found)


def main(root: Path) -> None:
    files = _ui_files(root)
    total = code = 0
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        total += len(lines)
        code += sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))
    print(f"ui/ in {root}: {len(files)} modules, {total} lines, {code} code lines")
    edges = ui_import_edges(root)
    groups = _strongly_connected(edges)
    print(f"import circles at run time: {len(groups)} group(s) {[sorted(g) for g in groups]}; "
          f"{len(cycles(edges))} distinct cycle(s)")
    crossing = set()
    for path in files:
        crossing |= private_crossings(path, root)
    print(f"private names crossing a module (from ui/): {len(crossing)} {sorted(crossing)}")
    reads = private_attribute_reads(root)
    print(f"private attributes read off another object (x._name, x not self): {len(reads)} {reads}")
    print(f'self: "AitkApp" annotations: {len(app_mixin_annotations(root))}')
    cmd_handlers = actions = 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                cmd_handlers += node.name.startswith("_cmd_")
                actions += node.name.startswith("action_")
    lookups = [s for s in string_dispatch(root) if "getattr" in s]
    print(f"dispatch: {cmd_handlers} _cmd_ handlers, {len(lookups)} getattr-by-built-name lookup(s), "
          f"{actions} action_ methods")
    print(f"widget reads of app.state/app.session: {len(widgets_reading_app_state(root))}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE)
