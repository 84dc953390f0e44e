"""Limits over real HTTP: every request field at its edges, sampling values that once
crashed a batch, the prompt bound that holds before tokenizing, and connections that never
finish their headers (issue 9, sections 1 and 2)."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import httpx
import pytest

from inference_server.__main__ import build_parser
from inference_server.settings import ServerSettings
from tests.fixtures_model import make_settings, serve

HELLO = [{"role": "user", "content": "hello"}]


def post_raw(running, body: str, timeout: float = 30) -> httpx.Response:
    """Posts JSON text as written (NaN, 2**64 and wrong types survive no client library)."""
    return httpx.post(running.base_url + "/v1/chat/completions", content=body.encode(),
                      headers={**running.headers(), "content-type": "application/json"}, timeout=timeout)


def assert_400_naming(response: httpx.Response, param: str) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    # A nested field is named down to its leaf ("stream_options.include_usage").
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == param or error["param"].startswith(param + "."), error
    assert error["message"].startswith(error["param"]) or param in error["message"], error
    assert "Traceback" not in error["message"] and "Error:" not in error["message"]
    return error


EDGES = [
    # field, JSON text of the value
    ("seed", str(2**64)), ("seed", str(2**63)), ("seed", str(-(2**63) - 1)), ("seed", "1.5"), ("seed", '"12"'),
    ("temperature", "NaN"), ("temperature", "Infinity"), ("temperature", "-Infinity"), ("temperature", "1e308"),
    ("temperature", "-5e-324"), ("temperature", "2.0000001"), ("temperature", '"0.5"'), ("temperature", "null1"),
    ("top_p", "NaN"), ("top_p", "0"), ("top_p", "-1e-300"), ("top_p", "1.0000001"), ("top_p", "Infinity"),
    ("top_p", '"0.9"'),
    ("max_tokens", "0"), ("max_tokens", "-1"), ("max_tokens", "1e308"), ("max_tokens", "5.5"), ("max_tokens", '"5"'),
    ("max_tokens", str(2**64)), ("max_completion_tokens", str(2**64)), ("max_completion_tokens", "-1"),
    ("n", str(2**64)), ("n", "0"), ("n", '"1"'),
    ("stream", '"yes"'), ("stream", "1"), ("ignore_eos", '"yes"'), ("ignore_eos", "2"),
    ("stop", '""'), ("stop", json.dumps(["a"] * 17)), ("stop", str(2**64)), ("stop", '[""]'),
    ("user", str(2**64)), ("model", str(2**64)), ("model", "[]"),
    ("messages", "[]"), ("messages", '"hello"'), ("messages", "null"), ("messages", '[{"role":"robot","content":"x"}]'),
    ("messages", '[{"role":"user","content":5}]'), ("messages", '[{"role":"user","content":[{"type":"image_url"}]}]'),
    ("stream_options", '{"include_usage": "maybe"}'), ("logprobs", "2"), ("frequency_penalty", "NaN"),
    ("presence_penalty", "1e308"), ("tools", '[{"type":"function"}]'), ("response_format", '{"type":"json_object"}'),
]


@pytest.mark.parametrize(("field", "value"), EDGES, ids=[f"{f}={v[:24]}" for f, v in EDGES])
def test_every_field_out_of_range_is_a_400_naming_it(tiny_server, field, value):
    if value == "null1":  # not JSON at all: the whole body is the problem, not one field
        response = post_raw(tiny_server, '{"messages":[{"role":"user","content":"x"}],"temperature":null1}')
        assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
        return
    messages = json.dumps(HELLO)
    body = (f'{{"messages":{value}}}' if field == "messages"
            else f'{{"messages":{messages},"max_tokens":2,"{field}":{value}}}')
    param = field
    response = post_raw(tiny_server, body)
    if field == "messages":  # the param points into the list where an item is wrong
        assert response.status_code == 400, response.text
        where = response.json()["error"]["param"]
        assert where and where.startswith("messages"), response.text
        return
    assert_400_naming(response, param)


def test_huge_values_inside_the_body_limit_are_refused_cleanly(tiny_server):
    many_stops = json.dumps(["x" * 10] * 10_000)
    assert_400_naming(post_raw(tiny_server, f'{{"messages":{json.dumps(HELLO)},"stop":{many_stops}}}'), "stop")
    response = post_raw(tiny_server, json.dumps({"model": "m" * 500_000, "messages": HELLO}))
    assert len(assert_400_naming(response, "model")["message"]) < 500  # not echoed back at length
    # 20,000 parts: measured like one text (more tokens than the context holds), not a 500.
    response = post_raw(tiny_server, json.dumps({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}] * 20_000}], "max_tokens": 1}))
    error = assert_400_naming(response, "messages")
    assert error["code"] == "context_length_exceeded" and "resulted in 200" in error["message"], error
    # ... and parts that fit are answered, joined as one text.
    response = post_raw(tiny_server, json.dumps({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}] * 20}], "max_tokens": 1}))
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 1, response.text


async def _stream_text(client: httpx.AsyncClient, running, body: dict) -> tuple[int, str, str | None]:
    """(status, text, finish_reason or error message) of one streamed request."""
    parts, end = [], None
    async with client.stream("POST", running.base_url + "/v1/chat/completions", json={**body, "stream": True},
                             headers=running.headers()) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, "", response.json()["error"]["message"]
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                end = "error: " + event["error"]["message"]
            elif event["choices"]:
                parts.append(event["choices"][0]["delta"].get("content") or "")
                end = event["choices"][0]["finish_reason"] or end
    return 200, "".join(parts), end


async def test_values_that_crashed_a_batch_fail_only_themselves(tiny_model):
    """seed 2**64 is refused with a 400; a temperature too small to divide by decodes
    greedily, as does a top_p below float32's resolution; streams decoding meanwhile keep
    their text."""
    with serve(make_settings(tiny_model, max_batch_size=8)) as running:
        streams = [{"model": "demo-adapter", "messages": [{"role": "user", "content": p}], "max_tokens": 60,
                    "ignore_eos": True, "temperature": 0} for p in ("hello", "tell me a story", "count to five")]
        greedy = {"messages": [{"role": "user", "content": "what is your name?"}], "max_tokens": 24,
                  "ignore_eos": True, "temperature": 0}
        odd = [{**greedy, "temperature": 5e-324}, {**greedy, "temperature": 2e-38},
               {**greedy, "temperature": 1.0, "top_p": 1e-300}, {**greedy, "temperature": 1.0, "top_p": 5e-324}]
        async with httpx.AsyncClient(timeout=60) as client:
            alone = [await _stream_text(client, running, body) for body in streams]
            greedy_alone = await _stream_text(client, running, greedy)
            running.state.engine.peak_batch = 0
            tasks = [asyncio.ensure_future(_stream_text(client, running, body)) for body in streams]
            await asyncio.sleep(0.05)  # the odd ones arrive while the others are decoding
            seeded = await client.post(running.base_url + "/v1/chat/completions", headers=running.headers(),
                                       json={**greedy, "temperature": 1.0, "seed": 2**64})
            odd_results = await asyncio.gather(*(_stream_text(client, running, body) for body in odd))
            together = await asyncio.gather(*tasks)
        assert_400_naming(seeded, "seed")
        assert running.state.engine.peak_batch >= 4, "the odd requests did not share a batch with the streams"
        assert list(together) == alone and all(end == "length" for _, _, end in alone)
        assert odd_results == [greedy_alone] * len(odd)


async def test_a_prompt_over_the_character_bound_is_refused_before_tokenizing(tiny_server):
    state = tiny_server.state
    loaded = state.loaded
    longest = max(len(t) for t in loaded.tokenizer.get_vocab())
    assert state.prompt_char_limit == loaded.context_len * longest
    calls = []
    real_encode = loaded.encode_chat

    def counting_encode(messages):
        calls.append(sum(len(m["content"]) for m in messages))
        return real_encode(messages)

    loaded.encode_chat = counting_encode
    try:
        over = state.prompt_char_limit + 1
        # Split over two messages: the bound counts every message's text.
        body = {"messages": [{"role": "system", "content": "a" * (over // 2)},
                             {"role": "user", "content": [{"type": "text", "text": "b" * (over - over // 2)}]}]}
        response = httpx.post(tiny_server.base_url + "/v1/chat/completions", json=body,
                              headers=tiny_server.headers(), timeout=30)
        error = response.json()["error"]
        assert (response.status_code, error["code"], error["param"]) == (400, "context_length_exceeded", "messages")
        assert str(over) in error["message"] and str(loaded.context_len) in error["message"]
        assert calls == []  # refused without tokenizing
        # At the bound the prompt is tokenized and then measured in tokens, as before.
        at_bound = {"messages": [{"role": "user", "content": "word " * (state.prompt_char_limit // 5)}]}
        response = httpx.post(tiny_server.base_url + "/v1/chat/completions", json=at_bound,
                              headers=tiny_server.headers(), timeout=30)
        assert response.status_code == 400 and "resulted in" in response.json()["error"]["message"]
        assert len(calls) == 1
    finally:
        del loaded.encode_chat


# ------------------------------------------------------------------ connections
async def test_long_prompts_share_a_few_tokenizer_threads(tiny_server):
    """A burst of long prompts is tokenized ENCODE_THREADS at a time (each encoding of a 1 MiB
    prompt takes ~160 MB), never one thread per request."""
    import threading

    from inference_server.serving import INLINE_ENCODE_BYTES
    from inference_server.limits import ENCODE_THREADS

    state = tiny_server.state
    loaded = state.loaded
    real_encode = loaded.encode_chat
    lock = threading.Lock()
    running, most, calls = [0], [0], [0]

    def slow_encode(messages):
        with lock:
            running[0] += 1
            calls[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return real_encode([{"role": "user", "content": "hi"}])

    # Over INLINE_ENCODE_BYTES on the wire (each "é" is six bytes escaped), under the character bound.
    content = "\u00e9" * (INLINE_ENCODE_BYTES // 6 + 100)
    body = json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": 1}, ensure_ascii=True)
    assert len(body) > INLINE_ENCODE_BYTES and len(content) < state.prompt_char_limit
    loaded.encode_chat = slow_encode
    try:
        async with httpx.AsyncClient(base_url=tiny_server.base_url, headers=tiny_server.headers(),
                                     timeout=60) as client:
            replies = await asyncio.gather(*(client.post("/v1/chat/completions", content=body,
                                                         headers={"Content-Type": "application/json"})
                                             for _ in range(8)))
    finally:
        del loaded.encode_chat
    assert [r.status_code for r in replies] == [200] * 8
    assert calls[0] == 8 and most[0] == ENCODE_THREADS


def _half_open(port: int, count: int) -> list[socket.socket]:
    """Connections that start a request and never finish its headers."""
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + str(i).encode())
        socks.append(s)
    return socks


def _closed_by_server(socks: list[socket.socket], timeout: float, enough: int | None = None) -> int:
    """How many of ``socks`` the server closed within ``timeout`` seconds (or once ``enough`` are)."""
    open_socks, closed = list(socks), 0
    deadline = time.monotonic() + timeout
    while open_socks and time.monotonic() < deadline and (enough is None or closed < enough):
        readable, _, _ = select.select(open_socks, [], [], max(0.0, deadline - time.monotonic()))
        for s in readable:
            try:
                data = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                data = b""
            if not data:
                closed += 1
                open_socks.remove(s)
    return closed


def _port(running) -> int:
    return int(running.base_url.rsplit(":", 1)[1])


def test_half_open_connections_are_dropped_after_the_header_timeout(tiny_model):
    with serve(make_settings(tiny_model, header_timeout=1.0, max_connections=1000)) as running:
        started = time.monotonic()
        socks = _half_open(_port(running), 200)
        try:
            # Real clients are served meanwhile, and a slow but finished request is not cut off.
            reply = httpx.post(running.base_url + "/v1/chat/completions", headers=running.headers(),
                               json={"messages": HELLO, "max_tokens": 3}, timeout=10)
            assert reply.status_code == 200
            assert _closed_by_server(socks, 0.5 - (time.monotonic() - started)) == 0  # not before the timeout
            assert _closed_by_server(socks, 5.0) == 200
        finally:
            for s in socks:
                s.close()
        # A kept-alive connection that starts a second request and stalls is dropped too.
        with socket.create_connection(("127.0.0.1", _port(running)), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.sendall(b"GET /health HTTP/1.1\r\nHost:")
            assert _closed_by_server([s], 5.0) == 1


def test_at_the_connection_limit_idle_connections_make_room_for_real_clients(tiny_model):
    with serve(make_settings(tiny_model, header_timeout=60.0, max_connections=50)) as running:
        socks = _half_open(_port(running), 200)
        try:
            for _ in range(3):
                health = httpx.get(running.base_url + "/health", timeout=5)
                assert health.status_code == 200
            assert _closed_by_server(socks, 5.0, enough=150) >= 150
        finally:
            for s in socks:
                s.close()


def _answered_early(port: int, count: int, key: str | None = None) -> list[socket.socket]:
    """Connections that announce a 1 MB body, get their answer (401 without a key) before
    sending it, then send one byte: the slow-body attack that needs no key."""
    socks = []
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + auth + b"Content-Length: 1000000\r\n\r\n")
        if key is None:
            assert s.recv(4096).startswith(b"HTTP/1.1 401")
        s.sendall(b"{")
        socks.append(s)
    return socks


def test_connections_answered_before_their_body_cannot_lock_out_real_clients(tiny_model):
    """Each of these held a connection for ever (a byte now and then cancelled the keep-alive
    timer, and they never counted as idle): at the limit, /health got connection resets."""
    with serve(make_settings(tiny_model, header_timeout=60.0, body_timeout=60.0, max_connections=40)) as running:
        socks = _answered_early(_port(running), 40)
        try:
            for _ in range(3):
                assert httpx.get(running.base_url + "/health", timeout=5).status_code == 200
            reply = httpx.post(running.base_url + "/v1/chat/completions", headers=running.headers(),
                               json={"messages": HELLO, "max_tokens": 3}, timeout=30)
            assert reply.status_code == 200
            assert _closed_by_server(socks, 5.0, enough=1) == 1  # the oldest made room (the others closed again)
        finally:
            for s in socks:
                s.close()


def test_a_body_that_stalls_is_closed_after_its_deadline(tiny_model):
    with serve(make_settings(tiny_model, header_timeout=1.0, body_timeout=1.0)) as running:
        started = time.monotonic()
        early = _answered_early(_port(running), 5)  # answered (401), the rest never comes
        slow = _answered_early(_port(running), 5, key=running.api_key)  # with the key: the app waits
        try:
            assert _closed_by_server(early + slow, 0.5 - (time.monotonic() - started)) == 0
            assert _closed_by_server(early + slow, 6.0) == 10
        finally:
            for s in early + slow:
                s.close()
        assert httpx.get(running.base_url + "/health", timeout=5).status_code == 200
        # A body sent whole after an early answer leaves the connection usable for the next request.
        with socket.create_connection(("127.0.0.1", _port(running)), timeout=5) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 401")
            s.sendall(b"{}GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"HTTP/1.1 200" in _read_until(s, b"HTTP/1.1 200")


def _read_until(s: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_an_unfinished_head_cannot_grow_past_max_header_bytes(tiny_model):
    with serve(make_settings(tiny_model, max_header_bytes=2048)) as running:
        with socket.create_connection(("127.0.0.1", _port(running)), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
            assert s.recv(4096).startswith(b"HTTP/1.1 400")
            assert _closed_by_server([s], 5.0) == 1
        assert httpx.get(running.base_url + "/health", timeout=5).status_code == 200


def test_connection_limits_come_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("AITK_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("AITK_MAX_CONNECTIONS", "99")
    settings = ServerSettings()
    assert (settings.header_timeout, settings.max_connections) == (2.5, 99)
    args = vars(build_parser().parse_args(["--header-timeout", "3", "--keep-alive-timeout", "9",
                                           "--max-connections", "7", "--max-header-bytes", "4096"]))
    settings = ServerSettings(**args)
    assert (settings.header_timeout, settings.keep_alive_timeout, settings.max_connections,
            settings.max_header_bytes) == (3.0, 9.0, 7, 4096)
    for bad in ({"header_timeout": 0}, {"header_timeout": float("nan")}, {"max_connections": 0},
                {"max_header_bytes": 2**64}):
        with pytest.raises(ValueError):
            ServerSettings(**bad)


def test_the_open_file_limit_is_raised_to_fit_max_connections():
    import resource

    from inference_server.connections import FD_HEADROOM, ensure_fd_headroom

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 300
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard - FD_HEADROOM)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # as tight as a small default
        ensure_fd_headroom(want)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want + FD_HEADROOM
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
