"""Time the local journey from `aitk init` to the first streamed token (goal: < 60 s).

    python benchmarks/local_journey.py

Runs the same steps as tests/test_journey.py in a fresh temp project (the demo model is
built on first use inside it, so this is a cold start) and prints each step's wall time.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.journey import Journey  # noqa: E402

GOAL_S = 60.0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aitk-journey-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        j = Journey(project)
        start = time.perf_counter()
        try:
            j.init()
            sub = j.subscription_id()
            j.create_group()
            j.provision(sub)
            j.deploy()
            chat_start = time.perf_counter() - start
            chat = j.chat("hello")
        finally:
            j.stop()
        first_token = chat_start + (chat.first_output_s or chat.seconds)
        for step in j.steps:
            extra = f"  (first output after {step.first_output_s:.2f} s)" if step.first_output_s else ""
            print(f"{step.name:<16} {step.seconds:6.2f} s{extra}")
        print(f"init -> first streamed token: {first_token:.1f} s (goal < {GOAL_S:.0f} s, "
              f"ratio goal/actual = {GOAL_S / first_token:.1f}x)")
        return 0 if first_token < GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
