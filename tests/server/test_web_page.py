"""The chat page at ``/``, driven in a real headless browser (Debian's Chromium through
Playwright) against the real server with the tiny model, the demo adapter, a second
adapter and the base.

Playwright never downloads a browser here: ``/usr/bin/chromium`` comes from the system's
packages (README "Tests"; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inference_server.demo_model import DEMO_REPLIES
from tests.fixtures_model import TEST_KEY, RunningServer, TinyModel, make_settings, serve, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODELS = ["demo-adapter", "second-adapter", "demo-model"]


@pytest.fixture(scope="module")
def server(tiny_model: TinyModel, second_adapter: Path) -> Iterator[RunningServer]:
    settings = make_settings(tiny_model, merge=None, adapters=[tiny_model.adapter_dir, second_adapter])
    with serve(settings) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 740})  # a phone's screen
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.goto(server.base_url + "/")
    yield page
    context.close()
    # The page threw nothing and the CSP refused nothing it needs (a refusal logs an error).
    assert [e for e in errors if "401" not in e] == []


def enter_key(page, key: str = TEST_KEY) -> None:
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")


def ask(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def last_answer(page):
    return page.locator(".msg.assistant").last


def test_the_page_is_served_without_the_key_with_a_strict_policy(server):
    response = httpx.get(server.base_url + "/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<meta name="viewport"' in response.text
    # Everything the page loads comes from this server: no CDN, no other origin.
    assert "http://" not in response.text and "https://" not in response.text
    for path in ("/static/app.js", "/static/app.css"):
        asset = httpx.get(server.base_url + path, timeout=10)
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == csp
        assert "http://" not in asset.text and "https://" not in asset.text
    # Only those three paths: nothing else under /static, and the API still wants the key.
    assert httpx.get(server.base_url + "/static/../settings.py", timeout=10).status_code == 404
    assert httpx.get(server.base_url + "/static/page.py", timeout=10).status_code == 404
    assert httpx.get(server.base_url + "/v1/models", timeout=10).status_code == 401


def test_the_page_policy_allows_nothing_beyond_this_origin(server):
    """Every directive, not only default-src and script-src: a connect-src * (the page could
    then send the key and the conversation anywhere) or an img-src that lets output beacon out
    would pass a check of those two."""
    csp = httpx.get(server.base_url + "/", timeout=10).headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert directives == {"default-src": ["'none'"], "script-src": ["'self'"], "style-src": ["'self'"],
                          "connect-src": ["'self'"], "img-src": ["'none'"], "base-uri": ["'none'"],
                          "form-action": ["'none'"], "frame-ancestors": ["'none'"]}


def test_key_models_streamed_answer_and_a_second_turn(page, server):
    enter_key(page)
    page.wait_for_selector("#chat-form:not([hidden])")
    assert page.locator("#model option").all_inner_texts() == MODELS
    # Kept in this tab's session storage only.
    assert page.evaluate("sessionStorage.getItem('aitk.apiKey')") == TEST_KEY
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []

    bodies: list[dict] = []
    page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and bodies.append(json.loads(r.post_data)))
    with page.expect_response("**/v1/chat/completions") as reply:
        ask(page, "hello")
    assert reply.value.headers["content-type"].startswith("text/event-stream")
    answer = last_answer(page)
    answer.locator(".meta").wait_for()
    adapter_reply = DEMO_REPLIES["hello"][1]
    assert answer.locator("p").first.inner_text() == adapter_reply
    assert "first token" in answer.locator(".meta").inner_text()
    assert bodies[-1]["stream"] is True and bodies[-1]["model"] == "demo-adapter"

    # Another model, same tab: the whole conversation goes with the second turn.
    page.select_option("#model", "demo-model")
    ask(page, "and now?")
    page.locator(".msg.assistant .meta").nth(1).wait_for()
    assert bodies[-1]["model"] == "demo-model"
    assert bodies[-1]["messages"][:3] == [{"role": "user", "content": "hello"},
                                          {"role": "assistant", "content": adapter_reply},
                                          {"role": "user", "content": "and now?"}]
    assert page.locator(".msg.user").all_inner_texts() == ["hello", "and now?"]

    # A reload keeps the key (same tab) and starts a fresh conversation.
    page.reload()
    page.wait_for_selector("#chat-form:not([hidden])")
    assert page.locator(".msg").count() == 0


def test_stop_ends_a_long_answer_and_frees_the_server(page, server):
    enter_key(page)
    page.wait_for_selector("#chat-form:not([hidden])")

    def long_reply(route):  # the page asks like any client; make this one reply at length
        body = json.loads(route.request.post_data)
        route.continue_(post_data=json.dumps({**body, "max_tokens": 2000, "ignore_eos": True}))

    page.route("**/v1/chat/completions", long_reply)
    generated_before = server.app.state.metrics.generated_tokens
    ask(page, "tell me everything")
    page.wait_for_selector("#stop:not([hidden])")
    answer = last_answer(page)
    assert wait_until(lambda: len(answer.inner_text()) > 20, timeout=10)  # it streams
    assert wait_until(lambda: server.state.engine.active == 1, timeout=10)
    page.click("#stop")
    answer.locator(".meta").wait_for()
    assert "stopped" in answer.locator(".meta").inner_text()
    assert page.locator("#stop").is_hidden() and page.locator("#send").is_enabled()
    # The abort reached the server: the generation ended long before its 2000 tokens.
    assert wait_until(lambda: server.state.engine.active == 0, timeout=10)
    assert server.app.state.metrics.generated_tokens - generated_before < 2000
    assert len(answer.inner_text()) > 20


def test_a_wrong_key_is_refused_and_forgotten(page, server):
    enter_key(page, "not-the-key")
    error = page.locator("#key-error")
    error.wait_for()
    assert "refused" in error.inner_text()
    assert page.locator("#chat-form").is_hidden()
    assert page.evaluate("sessionStorage.getItem('aitk.apiKey')") is None
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    enter_key(page, "ключ с пробелом")  # no header can carry it: refused before any request
    assert wait_until(lambda: "ASCII" in error.inner_text(), timeout=10)
    assert not any("/v1/" in url for url in requests)
    enter_key(page)  # then the right one works
    page.wait_for_selector("#chat-form:not([hidden])")


HOSTILE = ("Here: <script>window.pwned = 1</script> and <img src=x onerror=\"window.pwned = 2\">\n\n"
           "- **bold <b>not bold</b>** and `<i>code</i>`\n"
           "- [click](javascript:window.pwned=3) and [docs](https://example.org/a?b=<c>)\n"
           "- [d](data:text/html,<script>window.pwned=5</script>) [v](vbscript:msgbox) [f](file:///etc/passwd) "
           "[J](JaVaScRiPt:window.pwned=6) [b](blob:https://example.org/x) [w](ws://example.org) "
           "[m](mailto:a@example.org)\n\n"
           "```html\n<iframe src=\"https://example.org\"></iframe>\n```\n")


def test_model_output_never_becomes_markup(page, server):
    """A reply full of HTML is shown as text; the Markdown around it still renders."""
    enter_key(page)
    page.wait_for_selector("#chat-form:not([hidden])")
    events = [{"choices": [{"index": 0, "delta": {"content": HOSTILE[i:i + 7]}, "finish_reason": None}]}
              for i in range(0, len(HOSTILE), 7)]  # cut mid-tag, as a stream may
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, headers={"content-type": "text/event-stream"}, body=sse))
    ask(page, "<img src=x onerror=\"window.pwned = 4\">")
    answer = last_answer(page)
    answer.locator(".meta").wait_for()
    assert page.evaluate("window.pwned") is None
    messages = page.locator("#messages")
    for tag in ("script", "img", "iframe", "b", "i"):
        assert messages.locator(tag).count() == 0, tag
    text = answer.inner_text()
    assert "<script>window.pwned = 1</script>" in text and '<img src=x onerror="window.pwned = 2">' in text
    assert answer.locator("strong").first.inner_text() == "bold <b>not bold</b>"
    assert answer.locator("code").first.inner_text() == "<i>code</i>"
    assert answer.locator("pre code").inner_text() == '<iframe src="https://example.org"></iframe>'
    links = answer.locator("a")
    assert links.count() == 1 and links.first.get_attribute("href") == "https://example.org/a?b=%3Cc%3E"
    assert "[click](javascript:window.pwned=3)" in text
    # An allow-list (http and https only), not a deny-list of javascript: every other scheme stays text.
    for shown in ("[d](data:text/html,<script>window.pwned=5</script>)", "[v](vbscript:msgbox)",
                  "[f](file:///etc/passwd)", "[J](JaVaScRiPt:window.pwned=6)", "[b](blob:https://example.org/x)",
                  "[w](ws://example.org)", "[m](mailto:a@example.org)"):
        assert shown in text, shown
    assert page.locator(".msg.user").inner_text() == '<img src=x onerror="window.pwned = 4">'


def test_fits_a_phone_screen(page, server):
    enter_key(page)
    page.wait_for_selector("#chat-form:not([hidden])")
    ask(page, "hello")
    last_answer(page).locator(".meta").wait_for()
    # Nothing wider than the 390-pixel screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for selector in ("#send", "#prompt", "#model"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector


def test_an_error_mid_stream_is_shown_and_the_question_is_not_resent(page, server):
    enter_key(page)
    page.wait_for_selector("#chat-form:not([hidden])")
    broken = ('data: {"choices":[{"index":0,"delta":{"content":"Half an ans"},"finish_reason":null}]}\n\n'
              'data: {"error":{"message":"the model failed mid-answer","type":"server_error"}}\n\n')
    bodies: list[dict] = []

    def once_broken(route):
        bodies.append(json.loads(route.request.post_data))
        if len(bodies) == 1:
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=broken)
        else:
            route.continue_()

    page.route("**/v1/chat/completions", once_broken)
    ask(page, "first try")
    error = page.locator(".msg.assistant.error")
    error.wait_for()
    assert "the model failed mid-answer" in error.inner_text()
    assert page.locator("#send").is_enabled()
    ask(page, "hello")
    last_answer(page).locator(".meta").wait_for()
    # The failed turn is not part of the conversation any more: only the new question is sent.
    assert bodies[-1]["messages"] == [{"role": "user", "content": "hello"}]
    assert last_answer(page).locator("p").first.inner_text() == DEMO_REPLIES["hello"][1]
