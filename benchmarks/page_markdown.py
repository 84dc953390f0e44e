"""The chat page's Markdown renderer (inference_server/static/app.js) on hostile 20 kB replies.

    python benchmarks/page_markdown.py

The page re-renders the whole reply at most once per animation frame while it streams, so
a full render must stay well under a frame budget even for text built to make the inline
patterns backtrack (unclosed ``*``, backticks, brackets). Prints ms per full render in
headless Chromium (/usr/bin/chromium) and each case's ratio to plain prose of the same size.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STATIC = ROOT / "inference_server" / "static"
FILES = {"/": ("index.html", "text/html"), "/static/app.js": ("app.js", "text/javascript"),
         "/static/app.css": ("app.css", "text/css")}
CASES = [("prose", "Some **bold** and `code` text. " * 650), ("unclosed *", "*a " * 6700),
         ("unclosed `", "`a " * 6700), ("unclosed [](", "[a](b " * 3400), ("list items", "- item *x*\n" * 1800),
         ("one long fence", "```\n" + "x = 1\n" * 3300)]


def main() -> int:
    from playwright.sync_api import sync_playwright

    from tests.server.test_web_page import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()

        def serve(route) -> None:  # the page's own three files, nothing else
            name, media_type = FILES.get("/" + route.request.url.split("/", 3)[3], (None, None))
            if name:
                route.fulfill(status=200, content_type=media_type, body=(STATIC / name).read_bytes())
            else:
                route.fulfill(status=404, body="")

        page.route("**/*", serve)
        page.goto("http://bench.invalid/")
        timings = {}
        for label, text in CASES:
            timings[label] = page.evaluate(
                "t => { renderMarkdown(t); const s = performance.now();"
                " for (let i = 0; i < 10; i++) renderMarkdown(t); return (performance.now() - s) / 10; }", text)
            print(f"{label:16s} {len(text):6d} chars  {timings[label]:7.2f} ms/render  "
                  f"x{timings[label] / timings['prose']:.1f} of prose")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
