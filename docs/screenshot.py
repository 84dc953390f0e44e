"""Regenerate docs/screenshot.svg: the real TUI on the real local cloud, mid-conversation.

    python docs/screenshot.py

Runs the headless journey (init, group, provision, deploy) in a temp project, opens the
app on the same local cloud, selects the group, opens the chat (F9), asks a question and
saves Textual's SVG screenshot. The demo model answers with whole sentences from its small
built-in list, leaning toward the question's words; greedy decoding keeps it the same each run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.journey import Journey  # noqa: E402


async def shoot(project_dir: Path, out: Path) -> None:
    from aitk_tui.project import Project
    from aitk_tui.ui.app import create_app
    from aitk_tui.ui.widgets.prompt import PromptArea
    from textual.widgets import Input

    app = create_app(Project(project_dir), local=True)
    async with app.run_test(size=(110, 32)) as pilot:

        async def settle() -> None:
            await pilot.pause()
            for _ in range(30):
                if all(w.is_finished for w in app.workers):
                    break
                await app.workers.wait_for_complete()
                await pilot.pause()

        await settle()
        await pilot.press("f9")
        await settle()
        app.chat.query_one("#chat-temp", Input).value = "0"
        app.chat.query_one("#chat-max", Input).value = "200"
        app.query_one(PromptArea).text = "What is a LoRA adapter, and how do I deploy mine?"
        await pilot.press("enter")
        await settle()
        await pilot.pause(0.5)
        app.clear_notifications()
        for widget in app.query("Input, TextArea"):
            widget.cursor_blink = False
        await pilot.pause()
        svg = app.export_screenshot(title="aitk --local")
    out.write_text(svg, encoding="utf-8", newline="\n")


def main() -> int:
    out = ROOT / "docs" / "screenshot.svg"
    with tempfile.TemporaryDirectory(prefix="aitk-shot-") as tmp:
        project = Path(tmp) / "my-finetune"
        project.mkdir()
        j = Journey(project)
        try:
            j.init()
            sub = j.subscription_id()
            j.create_group("rg-demo")
            j.provision(sub, "rg-demo")
            j.deploy()
            asyncio.run(shoot(project, out))
        finally:
            j.stop()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
