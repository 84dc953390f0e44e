"""Layering, checked in a fresh interpreter (as harlequin does): the back-end never imports
Textual, and ``aitk`` itself starts without loading the Azure SDK or torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.import_scan import REPO, imports



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
    "aitk_tui.cli._session",
    "aitk_tui.cli.params",
    "aitk_tui.cli.demo",
    "aitk_tui.cli._printer",
    "aitk_tui.cli.chat",
    "aitk_tui.chat.wake",
    "aitk_tui.snippets",
    "aitk_tui.backend",
    "aitk_tui.endpoints",
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


def test_the_contract_module_is_light():
    """The faces import aitk_tui.backend before any session exists: the SDK, pydantic and
    the local cloud load only once a session is opened."""
    roots = _loaded_after("import aitk_tui.backend, aitk_tui.endpoints")
    assert not {"azure", "torch", "textual", "httpx", "pydantic"} & _roots(roots), sorted(_roots(roots))
    assert not {m for m in roots if m.startswith(("aitk_tui.local", "aitk_tui.cloud"))}


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


# -- the back-end and the local cloud do not import each other (issue 11 section 0) ---------------
def offenders(package: str, forbidden: str, root: Path = REPO) -> list[str]:
    out = []
    for path in sorted((root / "aitk_tui" / package).rglob("*.py")):
        bad = sorted(m for m in imports(path, root) if m == forbidden or m.startswith(forbidden + "."))
        if bad:
            out.append(f"{path.relative_to(root).as_posix()} imports {', '.join(bad)}")
    return out


def test_the_import_scan_sees_relative_lazy_and_dynamic_imports(tmp_path):
    probe = tmp_path / "aitk_tui" / "cloud" / "sub" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(textwrap.dedent("""
        from ...local import daemon
        from .. import session
        def f():
            from ... import local
            import aitk_tui.local.server
            import importlib
            importlib.import_module("aitk_tui.local.credential")
        from ...localized import x  # another module that only shares the prefix
    """))
    assert offenders("cloud", "aitk_tui.local", tmp_path) == [
        "aitk_tui/cloud/sub/probe.py imports aitk_tui.local, aitk_tui.local.credential, aitk_tui.local.daemon, "
        "aitk_tui.local.server"]
    assert offenders("cloud", "aitk_tui.cloud", tmp_path) == [
        "aitk_tui/cloud/sub/probe.py imports aitk_tui.cloud, aitk_tui.cloud.session"]


def test_the_back_end_does_not_import_the_local_cloud():
    """``cloud/`` reaches the local cloud by its endpoints alone, as it reaches Azure;
    only :mod:`aitk_tui.backend` starts it."""
    assert offenders("cloud", "aitk_tui.local") == []


def test_the_local_cloud_does_not_import_the_back_end():
    """The emulator answers HTTP; it needs none of our client (shared types: aitk_tui.endpoints)."""
    assert offenders("local", "aitk_tui.cloud") == []


# -- the server's one module the client may import (issue 20 section 3) --------------------------
def test_aitk_imports_only_the_adapter_spec_of_the_server():
    """aitk_tui checks an adapter list as the server will read it, and nothing more of the server:
    ``inference_server.adapter_spec`` (standard library only), never its pydantic settings."""
    found = []
    for path in sorted((REPO / "aitk_tui").rglob("*.py")):
        for module in imports(path, REPO):
            if module.split(".")[0] == "inference_server" and not (
                    module == "inference_server.adapter_spec" or module.startswith("inference_server.adapter_spec.")):
                found.append(f"{path.relative_to(REPO).as_posix()} imports {module}")
    assert found == []


def test_the_adapter_spec_needs_only_the_standard_library():
    loaded = _loaded_after("import inference_server.adapter_spec")
    assert not {m.split(".")[0] for m in loaded} & {"pydantic", "pydantic_settings", "torch", "fastapi",
                                                     "transformers", "peft", "httpx"}


def test_an_adapter_list_joins_to_what_it_parses_back_from():
    from pathlib import Path

    import pytest

    from inference_server.adapter_spec import AdapterSpec, join_adapters, parse_adapters

    lists = [[AdapterSpec(None, Path("/mount/models/a,b/adapter"))],  # a lone path keeps its commas
             [AdapterSpec("sql", Path("/mount/models/sql/adapter")), AdapterSpec("chat", Path("/m/x,y"))],
             [AdapterSpec("a.b:c-1", Path("relative/path"))]]
    for specs in lists:
        assert parse_adapters(join_adapters(specs)) == specs
    assert join_adapters(["sql=/m/s", ("chat", "/m/c")]) == "sql=/m/s,chat=/m/c"
    with pytest.raises(ValueError, match="every entry needs a NAME="):
        join_adapters([AdapterSpec("a", Path("/m/a")), AdapterSpec(None, Path("/m/b"))])
