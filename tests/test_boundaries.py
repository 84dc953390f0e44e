"""Layering, checked in a fresh interpreter (as harlequin does): the back-end never imports
Textual, and ``aitk`` itself starts without loading the Azure SDK or torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _loaded_after(import_line: str) -> set[str]:
    code = textwrap.dedent(f"""
        import json, sys
        {import_line}
        print(json.dumps(sorted(sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("module", [
    "aitk_tui.cli",
    "aitk_tui.cli_cloud",
    "aitk_tui.cli_params",
    "aitk_tui.cli_demo",
    "aitk_tui.snippets",
    "aitk_tui.cloud.session",
    "aitk_tui.cloud.provision",
    "aitk_tui.cloud.deploy",
    "aitk_tui.cloud.logs",
    "aitk_tui.cloud.health",
    "aitk_tui.cloud.auth",
    "aitk_tui.cloud.accounts",
    "aitk_tui.config.parameters",
    "aitk_tui.local.server",
])
def test_back_end_does_not_import_textual(module):
    assert "textual" not in _roots(_loaded_after(f"import {module}"))


def test_cli_import_is_light():
    loaded = _loaded_after("import aitk_tui.cli")
    roots = _roots(loaded)
    assert not {"azure", "torch", "textual", "httpx", "transformers", "pydantic"} & roots, sorted(roots)


def test_cli_help_runs_without_heavy_imports():
    code = "import sys, json; from aitk_tui.cli import main; rc = main(['--help']); " \
           "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    roots = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {"azure", "torch", "textual"} & roots


def test_no_textual_import_outside_ui():
    offenders = []
    for path in (REPO / "aitk_tui").rglob("*.py"):
        rel = path.relative_to(REPO / "aitk_tui")
        if rel.parts[0] == "ui":
            continue
        text = path.read_text(encoding="utf-8")
        if "import textual" in text or "from textual" in text:
            offenders.append(str(rel))
    assert offenders == []


def test_cloud_modules_stay_small():
    for path in (REPO / "aitk_tui" / "cloud").glob("*.py"):
        assert len(path.read_text().splitlines()) < 500, path.name
