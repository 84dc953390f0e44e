"""The headless `aitk --local` journey, step by step, shared by the journey test and
``benchmarks/local_journey.py`` (which times it).

Each step runs the real ``aitk`` entry point in a subprocess with the project folder as
its working directory, exactly as a user types it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Step:
    name: str
    seconds: float
    stdout: str
    stderr: str
    first_output_s: float | None = None


@dataclass
class Journey:
    project: Path
    steps: list[Step] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("AITK_TORCH_THREADS", "1")
        env.pop("AITK_API_KEY", None)
        return env

    def aitk(self, *args: str, name: str | None = None, timeout: float = 240) -> Step:
        """Run `aitk ARGS` in the project; raise with both streams if it fails."""
        cmd = [sys.executable, "-m", "aitk_tui", *args]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=self.project, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        first: float | None = None
        out_chunks: list[str] = []
        # Read stdout as it arrives to time the first streamed token.
        assert proc.stdout is not None
        while True:
            ch = proc.stdout.read(1)
            if not ch:
                break
            if first is None and ch.strip():
                first = time.perf_counter() - start
            out_chunks.append(ch)
            if time.perf_counter() - start > timeout:
                proc.kill()
                break
        _, err = proc.communicate(timeout=timeout)
        step = Step(name or " ".join(args[:2]), time.perf_counter() - start, "".join(out_chunks), err, first)
        self.steps.append(step)
        if proc.returncode != 0:
            raise AssertionError(f"`aitk {' '.join(args)}` exited {proc.returncode}\n"
                                 f"--- stdout\n{step.stdout}\n--- stderr\n{step.stderr}")
        return step

    # -- the journey ------------------------------------------------------------------
    def init(self) -> Step:
        return self.aitk("init", str(self.project), name="init")

    def subscription_id(self) -> str:
        subs = json.loads(self.aitk("subscriptions", "--local", "--json", name="subscriptions").stdout)
        assert subs, "the local cloud offers no subscription"
        return subs[0]["id"]

    def create_group(self, name: str = "rg-demo") -> Step:
        return self.aitk("groups", "create", name, "--location", "eastus", "--local", name="groups create")

    def provision(self, subscription: str, group: str = "rg-demo") -> Step:
        return self.aitk("provision", "--subscription", subscription, "--resource-group", group,
                         "--local", "--yes", name="provision")

    def deploy(self) -> Step:
        return self.aitk("deploy", "--local", name="deploy")

    def chat(self, message: str = "hello") -> Step:
        return self.aitk("chat", message, "--local", "--max-tokens", "16", "--temperature", "0", name="chat")

    def stop(self) -> Step:
        return self.aitk("local", "stop", name="local stop")


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line mentions ``text`` (zombies excluded)."""
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (pid_dir / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append((int(pid_dir.name), cmdline.strip()))
    return found
