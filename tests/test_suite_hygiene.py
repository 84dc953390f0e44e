"""The test suite cleans up after itself: every pytest process makes a private state
folder (so local clouds started by tests never touch the developer's registry), and it
must not outlive the run (568 of them had piled up in /tmp)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_pytest_run_leaves_no_state_folder_behind(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-n", "0",
         "tests/test_config.py::test_original_ai_toolkit_file_loads_validates_and_drops_nulls"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    assert sorted(p.name for p in tmp_path.glob("aitk-test-state-*")) == []
