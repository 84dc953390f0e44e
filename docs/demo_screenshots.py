"""Regenerate docs/compare.svg (compare mode in the real TUI) and docs/chat-page.png plus
docs/chat-page-phone.png (the server's chat page in headless Chromium).

    python docs/demo_screenshots.py

Builds the offline demo model and a second adapter in a temp folder, serves the base and
both adapters with the real inference server, and asks every view the same questions.
The TUI runs with the tests' scripted cloud session (the picture is of the compare screen,
which talks to the real server only); the page is driven by Playwright with the system's
Chromium (/usr/bin/chromium), as tests/server/test_web_page.py does.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures_model import (  # noqa: E402
    TEST_KEY, TinyModel, build_random_adapter, make_settings, serve,
)

QUESTIONS = ["hello", "What does fine-tuning change?"]


async def shoot_compare(base_url: str, project_dir: Path, out: Path) -> None:
    from textual.widgets import Input

    from aitk_tui.project import Project
    from aitk_tui.ui.app import create_app
    from aitk_tui.ui.widgets.compare import CompareScreen
    from aitk_tui.ui.widgets.prompt import PromptArea
    from tests.ui.fakes import FakeSession, factory_for

    project = Project(project_dir)
    app = create_app(project, session_factory=factory_for(FakeSession(project)))
    async with app.run_test(size=(120, 36)) as pilot:

        async def settle() -> None:
            await pilot.pause()
            for _ in range(30):
                if all(w.is_finished for w in app.workers):
                    break
                await app.workers.wait_for_complete()
                await pilot.pause()

        await settle()
        chat = await app.main.ensure_pane("chat")
        app.main.show_tab("chat")
        chat.set_endpoint(base_url, TEST_KEY)
        chat.query_one("#chat-temp", Input).value = "0"
        chat.query_one("#chat-max", Input).value = "80"
        await settle()
        await app.main.run_action("compare_models")
        for model in ("demo-adapter", "demo-model"):
            for _ in range(200):
                await pilot.pause(0.02)
                if getattr(app.screen, "loaded", False):
                    break
            await pilot.press(*model, "enter")
            await settle()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        for question in QUESTIONS:
            screen.query_one(PromptArea).text = question
            await pilot.press("enter")
            await settle()
        await pilot.pause(0.5)
        app.clear_notifications()
        for widget in app.query("Input, TextArea"):
            widget.cursor_blink = False
        await pilot.pause()
        svg = app.export_screenshot(title="aitk · Compare models")
    out.write_text(svg, encoding="utf-8", newline="\n")


def shoot_page(base_url: str, out: Path, size: tuple[int, int]) -> None:
    from playwright.sync_api import sync_playwright

    from tests.server.test_web_page import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        page.goto(base_url + "/")
        page.fill("#key", TEST_KEY)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#chat-form:not([hidden])")
        for i, question in enumerate(QUESTIONS):
            page.fill("#prompt", question)
            page.press("#prompt", "Enter")
            page.locator(".msg.assistant .meta").nth(i).wait_for()
        page.screenshot(path=str(out))
        browser.close()


def main() -> int:
    import torch

    torch.set_num_threads(1)
    from inference_server.demo_model import build_demo_model

    with tempfile.TemporaryDirectory(prefix="aitk-demo-shots-") as tmp:
        built = build_demo_model(Path(tmp) / "build")
        tiny = TinyModel(built.model_dir, built.adapter_dir)
        second = build_random_adapter(tiny, Path(tmp) / "second-adapter", seed=1)
        project = Path(tmp) / "project"
        shutil.copytree(ROOT / "infra", project / "infra")
        settings = make_settings(tiny, merge=None, adapters=[tiny.adapter_dir, second], max_tokens_cap=80)
        with serve(settings) as running:
            asyncio.run(shoot_compare(running.base_url, project, ROOT / "docs" / "compare.svg"))
            shoot_page(running.base_url, ROOT / "docs" / "chat-page.png", (1000, 640))
            shoot_page(running.base_url, ROOT / "docs" / "chat-page-phone.png", (390, 740))
    print("wrote docs/compare.svg, docs/chat-page.png, docs/chat-page-phone.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
