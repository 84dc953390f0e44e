"""The chat client against the real tiny-model server, plus scripted answers (httpx
MockTransport) for the failures a real endpoint cannot be made to produce on demand."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aitk_tui.chat.client import (
    ASLEEP,
    ChatClient,
    ChatError,
    Delta,
    Finished,
    Transcript,
    normalize_base_url,
    sanitize,
)
from inference_server.demo_model import DEMO_REPLIES
from tests.fixtures_model import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]
HELLO = [{"role": "user", "content": "hello"}]


async def collect(client: ChatClient, messages, **kw) -> tuple[str, Finished]:
    text, finished = [], None
    async for event in client.stream_chat(messages, **kw):
        if isinstance(event, Delta):
            assert finished is None, "no text after Finished"
            text.append(event.text)
        else:
            finished = event
    assert finished is not None
    return "".join(text), finished


def scripted(handler) -> ChatClient:
    return ChatClient("https://endpoint.example", TEST_KEY, transport=httpx.MockTransport(handler))


def sse(*events: object, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def chunk(content=None, finish=None) -> dict:
    delta = {"content": content} if content is not None else {}
    return {"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# --------------------------------------------------------------------------- real server
async def test_streams_the_adapter_reply_with_timing_and_usage(tiny_server):
    async with ChatClient(tiny_server.base_url, TEST_KEY, allow_insecure_http=True) as client:
        assert await client.list_models() == ["demo-adapter", "demo-model"]
        assert await client.default_model() == "demo-adapter"
        text, finished = await collect(client, HELLO, temperature=0)
        assert text == DEMO_REPLIES["hello"][1]
        assert finished.finish_reason == "stop" and finished.model == "demo-adapter"
        assert finished.usage.completion_tokens > 1 and finished.ttft_s > 0 and finished.tokens_per_s > 0
        base_text, _ = await collect(client, HELLO, model="demo-model", temperature=0)
        assert base_text == DEMO_REPLIES["hello"][0]
        _, short = await collect(client, HELLO, temperature=0, max_tokens=2)
        assert short.finish_reason == "length" and short.usage.completion_tokens == 2


async def test_system_prompt_and_transcript_history_are_sent(tiny_server):
    transcript = Transcript()
    transcript.add_user("hello")
    async with ChatClient(tiny_server.base_url + "/v1/", TEST_KEY, allow_insecure_http=True) as client:
        reply, _ = await collect(client, transcript, temperature=0, max_tokens=8)
        transcript.add_assistant(reply)
        transcript.add_user("count to five")
        _, finished = await collect(client, transcript, system="You are terse.", temperature=0, max_tokens=4)
    # The prompt grew by the system message and the history (the template counts tokens).
    assert finished.usage.prompt_tokens > 20
    markdown = transcript.to_markdown(title="Chat")
    assert markdown.startswith("# Chat\n") and "**User:**" in markdown and reply in markdown


async def test_health_reports_ready_model_and_demo_flag(tiny_server):
    async with ChatClient(tiny_server.base_url, None) as client:
        health = await client.health()
    assert health.ok and health.state == "ok" and health.adapter == "demo-adapter" and health.demo


async def test_wrong_or_missing_key_is_one_clear_sentence_without_the_key(tiny_server):
    wrong = "sk-wrong-key-123456"
    async with ChatClient(tiny_server.base_url, wrong, allow_insecure_http=True) as client:
        with pytest.raises(ChatError) as caught:
            await collect(client, HELLO, model="demo-adapter")
        assert repr(client).count("set") == 1 and wrong not in repr(client)
    error = caught.value
    assert error.message == "the endpoint refused the API key" and error.status == 401
    for text in (str(error), repr(error), str(error.detail), str(error.args)):
        assert wrong not in text
    async with ChatClient(tiny_server.base_url, None) as client:
        with pytest.raises(ChatError, match="requires an API key"):
            await client.list_models()


async def test_connection_refused_means_asleep():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    async with ChatClient(f"http://127.0.0.1:{port}", TEST_KEY, allow_insecure_http=True) as client:
        with pytest.raises(ChatError) as caught:
            await collect(client, HELLO, model="m")
        health = await client.health()
    assert caught.value.message == ASLEEP and caught.value.status is None
    assert not health.ok and health.state == "asleep"


# --------------------------------------------------------------------------- scripted answers
@pytest.mark.parametrize("status, headers, body, expected", [
    (429, {"Retry-After": "7"}, {"error": {"message": "queue full", "type": "rate_limit_error"}},
     "the endpoint is busy, retry in 7 s"),
    (502, {}, "Bad Gateway", ASLEEP),
    (504, {}, "", ASLEEP),
    (503, {}, {"error": {"message": "loading", "code": "model_loading"}},
     "the endpoint is starting: its model is still loading"),
    (404, {}, {"error": {"message": "The model `x` does not exist."}},
     "the endpoint does not know that model or path (is the URL right?)"),
    (413, {}, {"error": {"message": "too big"}}, "the conversation is too large for the endpoint"),
    (400, {}, {"error": {"message": "temperature: too hot"}}, "the endpoint rejected the request"),
    (500, {}, {"detail": "boom"}, "the endpoint failed (HTTP 500)"),
])
async def test_http_errors_map_to_one_sentence(status, headers, body, expected):
    def handler(request):
        content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
        return httpx.Response(status, headers=headers, content=content)

    with pytest.raises(ChatError) as caught:
        await collect(scripted(handler), HELLO, model="m")
    assert caught.value.message == expected and caught.value.status == status
    if isinstance(body, dict):  # the server's own words are kept as the detail
        inner = body.get("error", body)
        assert caught.value.detail == (inner.get("message") or inner.get("detail"))


async def test_a_server_echoing_the_key_is_scrubbed():
    def handler(request):
        assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
        return httpx.Response(400, json={"error": {"message": f"bad key {TEST_KEY} given"}})

    with pytest.raises(ChatError) as caught:
        await collect(scripted(handler), HELLO, model="m")
    assert TEST_KEY not in str(caught.value) + repr(caught.value) and "***" in caught.value.detail


async def test_error_event_inside_the_stream_raises():
    def handler(request):
        return httpx.Response(200, content=sse(chunk("partial"), {"error": {"message": "engine died"}}))

    client = scripted(handler)
    with pytest.raises(ChatError, match="failed while answering") as caught:
        await collect(client, HELLO, model="m")
    assert caught.value.detail == "engine died"


async def test_stream_without_done_is_fine_once_finished_but_not_when_cut():
    # transformers' own server sends no [DONE]; a cut connection sends no finish_reason either.
    finished_ok = scripted(lambda r: httpx.Response(200, content=sse(chunk("hi"), chunk(finish="stop"), done=False)))
    text, finished = await collect(finished_ok, HELLO, model="m")
    assert (text, finished.finish_reason, finished.usage) == ("hi", "stop", None)
    cut = scripted(lambda r: httpx.Response(200, content=sse(chunk("hi"), done=False)))
    with pytest.raises(ChatError, match="ended before the reply was complete"):
        await collect(cut, HELLO, model="m")


async def test_default_model_is_the_adapter_and_deltas_are_sanitized():
    seen = {}

    def handler(request):
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": "base", "parent": None}, {"id": "my-lora", "parent": "base"}]})
        seen.update(json.loads(request.content))
        return httpx.Response(200, content=sse(chunk("ok\x1b[31m red\x07"), chunk(finish="stop")))

    text, _ = await collect(scripted(handler), HELLO)
    assert seen["model"] == "my-lora" and seen["stream"] is True
    assert seen["stream_options"] == {"include_usage": True}
    assert "temperature" not in seen  # unset options are left to the server
    assert text == "ok red"


# --------------------------------------------------------------------------- helpers
def test_sanitize_strips_escape_sequences_and_controls_but_keeps_layout():
    raw = "a\x1b[1;31mred\x1b[0m\tb\nc\x07\x08d\x1b]0;title\x07e\x9b2Jf\u202eg\x00h\r\ni\x7f"
    assert sanitize(raw) == "ared\tb\ncdefg" + "h\ni"
    assert sanitize("plain text, ünïcode ✓ \ufffd") == "plain text, ünïcode ✓ \ufffd"


@pytest.mark.parametrize("given, expected", [
    ("myapp.eastus.azurecontainerapps.io", "https://myapp.eastus.azurecontainerapps.io/v1"),
    ("https://myapp.example.io/", "https://myapp.example.io/v1"),
    ("http://127.0.0.1:7860", "http://127.0.0.1:7860/v1"),
    ("http://127.0.0.1:7860/v1/", "http://127.0.0.1:7860/v1"),
    ("localhost:7860", "https://localhost:7860/v1"),
    ("https://gw.example.com/openai", "https://gw.example.com/openai/v1"),
])
def test_base_url_normalisation(given, expected):
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", "ftp://x", "https://", "a b"])
def test_bad_base_urls_are_rejected(bad):
    with pytest.raises(ValueError):
        normalize_base_url(bad)


def test_client_module_imports_no_ui_or_ml_stack():
    code = ("import sys, aitk_tui.chat.client; "
            "print(sorted(m for m in ('textual', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


async def test_tls_endpoint_with_its_own_ca(tiny_model, tmp_path):
    import trustme

    from tests.fixtures_model import make_settings, serve

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    settings = make_settings(tiny_model, ssl_certfile=tmp_path / "server.pem", ssl_keyfile=tmp_path / "server.key",
                             max_batch_size=1)
    with serve(settings) as running:
        assert running.base_url.startswith("https://")
        async with ChatClient(running.base_url, TEST_KEY, verify=str(tmp_path / "ca.pem")) as client:
            text, _ = await collect(client, HELLO, temperature=0)
            assert text == DEMO_REPLIES["hello"][1]
        async with ChatClient(running.base_url, TEST_KEY) as untrusting:
            with pytest.raises(ChatError, match="TLS certificate is not trusted"):
                await untrusting.list_models()


class _Endless:
    """A hostile body: ``total`` bytes of ``unit`` in 64 KiB chunks; counts what was pulled."""

    def __init__(self, unit: bytes, total: int, prefix: bytes = b"") -> None:
        self.unit, self.total, self.prefix, self.pulled = unit, total, prefix, 0

    async def __aiter__(self):
        if self.prefix:
            yield self.prefix
        piece = self.unit * (65536 // len(self.unit))
        while self.pulled < self.total:
            self.pulled += len(piece)
            yield piece


async def test_a_hostile_endpoints_huge_error_body_or_sse_line_is_not_read_whole():
    """A 400 MB error body or SSE line was buffered whole (1.1 GB RSS): each is read only up to
    its cap, then the request fails with one clear sentence."""
    cap = 2 * 1024 * 1024
    huge = 64 * 1024 * 1024  # stands for 400 MB: the test reads what the client pulled
    bodies: dict[str, _Endless] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        kind = request.headers.get("x-test", "")
        if request.url.path.endswith("/health"):
            bodies["health"] = body = _Endless(b"x", huge)
            return httpx.Response(500, content=body)
        if kind == "line":
            bodies["line"] = body = _Endless(b"y", huge, prefix=b"data: {\"choices\": [{\"delta\": {\"content\": \"")
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        bodies["error"] = body = _Endless(b"z", huge)
        return httpx.Response(400, content=body)

    client = scripted(handler)
    with pytest.raises(ChatError) as e:
        await collect(client, HELLO)
    assert e.value.status == 400 and e.value.message == "the endpoint rejected the request"
    assert len(e.value.detail) <= 500 and bodies["error"].pulled <= cap

    client._http.headers["x-test"] = "line"
    with pytest.raises(ChatError) as e:
        await collect(client, HELLO)
    assert "stream line longer than" in e.value.message and bodies["line"].pulled <= cap

    health = await client.health()
    assert not health.ok and bodies["health"].pulled <= cap
    await client.aclose()


async def test_a_model_list_over_the_cap_is_refused_and_sse_lines_split_on_any_newline():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, content=_Endless(b" ", 64 * 1024 * 1024, prefix=b'{"data": [{"id": "m"}]'))
        events = [chunk("a"), chunk("b"), chunk(finish="stop")]
        body = b"data: " + json.dumps(events[0]).encode() + b"\r\n\r\ndata: " + json.dumps(events[1]).encode()
        return httpx.Response(200, content=body + b"\r\rdata: " + json.dumps(events[2]).encode() + b"\n\ndata: [DONE]")

    client = scripted(handler)
    with pytest.raises(ChatError) as e:
        await client.models()
    assert "larger than 4 MiB" in e.value.message
    text, finished = await collect(client, HELLO, model="m")
    assert text == "ab" and finished.finish_reason == "stop"
    await client.aclose()
