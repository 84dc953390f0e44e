"""The CLI's shape in figures, for a checkout (issue 20's before/after table).

    python benchmarks/cli_shape.py [CHECKOUT]      (default: this one)

Prints: the CLI's modules and their lines (all lines, and code lines: not blank, not a
comment), the import circles among them (lazy imports included, found in the source), and
the private names that cross a module (in the CLI, and in all of aitk_tui/ and
inference_server/). Reads the source only; nothing is imported from the checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.import_scan import cycles, import_edges  # noqa: E402
from tests.test_cli_layout import PACKAGES, _cli_modules, private_crossings  # noqa: E402


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def main(root: Path) -> None:
    modules = _cli_modules(root)
    total = code = 0
    print(f"CLI modules in {root}:")
    for name, path in modules.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        n_code = sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))
        total, code = total + len(lines), code + n_code
        print(f"  {name:<28} {len(lines):>5} lines {n_code:>5} code")
    print(f"  {'total':<28} {total:>5} lines {code:>5} code ({len(modules)} modules)")
    edges = import_edges(modules, root)
    groups = _strongly_connected(edges)
    print(f"import circles: {len(groups)} group(s) of modules importing each other "
          f"{[sorted(g) for g in groups]}; {len(cycles(edges))} distinct cycle(s)")
    cli_private, all_private = set(), set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found = private_crossings(path, root)
            all_private |= found
            cli_private |= {f for f in found if f[0] == "aitk_tui.cli" or f[0].startswith("aitk_tui.cli")}
    print(f"private names crossing a module: {len(cli_private)} in the CLI {sorted(f[2] for f in cli_private)}, "
          f"{len(all_private)} in aitk_tui/ and inference_server/")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE)
