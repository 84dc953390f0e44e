"""The server over real HTTP (uvicorn in a thread) with the official ``openai`` client
and raw httpx: health, models, the stream format, auth, errors, limits, the queue,
disconnects, concurrency, metrics and logs."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import httpx
import openai
import pytest

from inference_server.demo_model import DEMO_REPLIES
from inference_server.loading import load_model
from inference_server.settings import ConfigError
from tests.fixtures_model import TEST_KEY, make_settings, serve, wait_until

HELLO = [{"role": "user", "content": "hello"}]


def oai(running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=30)


def post(running, body, headers=None, timeout: float = 30) -> httpx.Response:
    return httpx.post(running.base_url + "/v1/chat/completions", json=body,
                      headers=running.headers() if headers is None else headers, timeout=timeout)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_health_is_503_while_loading_then_200(tiny_model):
    gate = threading.Event()

    def slow_loader(settings):
        gate.wait(30)
        return load_model(settings)

    with serve(make_settings(tiny_model), loader=slow_loader, wait_ready=False) as running:
        health = httpx.get(running.base_url + "/health")
        assert (health.status_code, health.json()) == (503, {"status": "loading"})
        assert health.headers["retry-after"]
        assert_error(post(running, {"messages": HELLO}), 503, "model_loading")
        assert_error(httpx.get(running.base_url + "/v1/models", headers=running.headers()), 503)
        gate.set()
        assert wait_until(lambda: httpx.get(running.base_url + "/health").status_code == 200, 30)
        body = httpx.get(running.base_url + "/health").json()
        assert body["status"] == "ok" and body["adapter"] == "demo-adapter" and body["demo"] is True


def test_failed_load_is_reported_on_health_and_to_the_supervisor(tiny_model, tmp_path, caplog):
    broken = tmp_path / "broken-adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    told = []
    with serve(make_settings(tiny_model, adapter_path=broken), on_load_failure=told.append,
               wait_ready=False) as running:
        assert wait_until(lambda: running.state.status == "failed", 30)
        health = httpx.get(running.base_url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "error"
        assert str(broken) in health.json()["error"]
        assert_error(post(running, {"messages": HELLO}), 503, "load_failed")
    assert len(told) == 1 and "adapter" in told[0]
    assert any(r.levelno == logging.ERROR and "model load failed" in r.getMessage() for r in caplog.records)


def test_models_lists_the_adapter_with_its_base_as_parent(tiny_server):
    models = oai(tiny_server).models.list().data
    assert [m.id for m in models] == ["demo-adapter", "demo-model"]
    assert models[0].parent == "demo-model" and models[1].parent is None
    assert models[0].max_model_len == 512


def test_non_streaming_reply_with_the_openai_client(tiny_server):
    client = oai(tiny_server)
    reply = client.chat.completions.create(model="demo-adapter", messages=HELLO, temperature=0)
    assert reply.choices[0].message.content == DEMO_REPLIES["hello"][1]
    assert reply.choices[0].finish_reason == "stop" and reply.object == "chat.completion"
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    base = client.chat.completions.create(model="demo-model", messages=HELLO, temperature=0)
    assert base.choices[0].message.content == DEMO_REPLIES["hello"][0]


def test_streaming_reply_with_the_openai_client(tiny_server):
    stream = oai(tiny_server).chat.completions.create(
        model="demo-adapter", messages=[{"role": "user", "content": "tell me a story"}], temperature=0,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEMO_REPLIES["tell me a story"][1]
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 1
    assert len({c.id for c in chunks}) == 1


def test_stop_strings_never_leak_through_the_stream(tiny_server):
    stream = oai(tiny_server).chat.completions.create(
        model="demo-adapter", messages=HELLO, temperature=0, stream=True, stop=["says h"])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hi! The adapter "


def test_raw_sse_framing(tiny_server):
    body = {"messages": HELLO, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
            "max_tokens": 4}
    with httpx.stream("POST", tiny_server.base_url + "/v1/chat/completions", json=body,
                      headers=tiny_server.headers()) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert payloads[-2]["choices"][0]["finish_reason"] == "length"
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 4
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)


def test_api_key_is_required_on_v1_and_metrics_but_not_health(tiny_server):
    no_key = post(tiny_server, {"messages": HELLO}, headers={})
    assert_error(no_key, 401, "invalid_api_key")
    assert no_key.headers["www-authenticate"] == "Bearer"
    assert_error(post(tiny_server, {"messages": HELLO}, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(post(tiny_server, {"messages": HELLO}, headers={"Authorization": TEST_KEY}), 401)
    assert httpx.get(tiny_server.base_url + "/metrics").status_code == 401
    assert httpx.get(tiny_server.base_url + "/v1/models").status_code == 401
    assert httpx.get(tiny_server.base_url + "/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=tiny_server.base_url + "/v1", api_key="nope", max_retries=0).models.list()


def test_refuses_to_serve_without_a_key_unless_explicitly_allowed(tiny_model):
    with pytest.raises(ConfigError, match="INFERENCE_API_KEY"):
        serve(make_settings(tiny_model, api_key=None, host="0.0.0.0")).__enter__()
    with pytest.raises(ConfigError, match="--allow-no-auth"):
        serve(make_settings(tiny_model, api_key=None)).__enter__()
    with serve(make_settings(tiny_model, api_key=None, allow_no_auth=True, max_batch_size=1)) as running:
        assert post(running, {"messages": HELLO, "max_tokens": 2}, headers={}).status_code == 200


def test_errors_use_the_openai_shape_and_status(tiny_server):
    error = assert_error(post(tiny_server, {"model": "gpt-4", "messages": HELLO}), 404, "model_not_found")
    assert error["param"] == "model" and "demo-adapter" in error["message"]
    error = assert_error(post(tiny_server, {"messages": HELLO, "temperature": 5}), 400)
    assert error["param"] == "temperature" and error["type"] == "invalid_request_error"
    assert_error(post(tiny_server, {"messages": []}), 400)
    assert "n must be 1" in assert_error(post(tiny_server, {"messages": HELLO, "n": 2}), 400)["message"]
    bad_json = httpx.post(tiny_server.base_url + "/v1/chat/completions", content=b"{nope",
                          headers=tiny_server.headers())
    assert "not valid JSON" in assert_error(bad_json, 400)["message"]
    assert_error(httpx.get(tiny_server.base_url + "/v1/nothing", headers=tiny_server.headers()), 404)
    with pytest.raises(openai.BadRequestError):
        oai(tiny_server).chat.completions.create(model="demo-adapter", messages=HELLO, top_p=0)


def test_request_limits(tiny_model):
    settings = make_settings(tiny_model, max_body_bytes=2048, max_messages=3, max_tokens_cap=16,
                             max_batch_size=2, merge=True)
    with serve(settings) as running:
        # Merged: the base no longer answers, so it is not listed; asking for it says why.
        listed = httpx.get(running.base_url + "/v1/models", headers=running.headers()).json()["data"]
        assert [(m["id"], m["parent"], m["merged"]) for m in listed] == [("demo-adapter", "demo-model", True)]
        error = assert_error(post(running, {"model": "demo-model", "messages": HELLO}), 404, "model_not_found")
        assert "--serve-base" in error["message"]

        big = {"messages": [{"role": "user", "content": "x" * 4000}]}
        assert_error(post(running, big), 413, "request_too_large")

        def chunked():  # no content-length: the limit must count streamed bytes
            yield json.dumps(big).encode()

        assert_error(httpx.post(running.base_url + "/v1/chat/completions", content=chunked(),
                                headers=running.headers()), 413)

        four = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi"}] * 2
        error = assert_error(post(running, {"messages": four}), 400, "too_many_messages")
        assert "4" in error["message"] and "3" in error["message"]

        too_long = {"messages": [{"role": "user", "content": "word " * 350}]}
        error = assert_error(post(running, too_long), 400, "context_length_exceeded")
        assert "512" in error["message"]
        prompt_tokens = int(error["message"].split("resulted in ")[1].split()[0])
        assert prompt_tokens > 512

        error = assert_error(post(running, {"messages": HELLO, "max_tokens": 17}), 400, "max_tokens_too_large")
        assert "17" in error["message"] and "16" in error["message"]
        ok = post(running, {"messages": HELLO, "max_completion_tokens": 16, "ignore_eos": True}).json()
        assert ok["usage"]["completion_tokens"] == 16 and ok["choices"][0]["finish_reason"] == "length"
        # No max_tokens: the cap is the default.
        ok = post(running, {"messages": HELLO, "ignore_eos": True}).json()
        assert ok["usage"]["completion_tokens"] == 16


def test_request_timeout_ends_the_reply_with_length(tiny_model):
    with serve(make_settings(tiny_model, request_timeout=0.1, max_batch_size=1)) as running:
        reply = post(running, {"messages": HELLO, "max_tokens": 480, "ignore_eos": True}).json()
        assert reply["choices"][0]["finish_reason"] == "length"
        assert 0 < reply["usage"]["completion_tokens"] < 480


async def _open_stream(client: httpx.AsyncClient, running, **extra):
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 480, "ignore_eos": True,
            "temperature": 0, "stream": True, **extra}
    request = client.build_request("POST", running.base_url + "/v1/chat/completions", json=body,
                                   headers=running.headers())
    return await client.send(request, stream=True)


async def test_full_queue_answers_429_with_retry_after(tiny_model):
    with serve(make_settings(tiny_model, max_batch_size=1, max_queue=1)) as running:
        engine = running.state.engine
        async with httpx.AsyncClient(timeout=30) as client:
            first = await _open_stream(client, running)
            assert await wait_async(lambda: engine.active == 1)
            second = await _open_stream(client, running)
            assert await wait_async(lambda: engine.queue_depth == 1)
            third = await client.post(running.base_url + "/v1/chat/completions", json={"messages": HELLO},
                                      headers=running.headers())
            error = assert_error(third, 429, "queue_full")
            assert int(third.headers["retry-after"]) >= 1 and "retry in" in error["message"]
            await first.aclose()
            await second.aclose()
        assert await wait_async(lambda: engine.active == 0 and engine.queue_depth == 0)


async def wait_async(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return predicate()


def generated_tokens(running) -> int:
    return running.app.state.metrics.generated_tokens


async def test_disconnect_stops_generation_and_frees_the_slot(tiny_model):
    with serve(make_settings(tiny_model, max_batch_size=1)) as running:
        engine = running.state.engine
        before = generated_tokens(running)
        async with httpx.AsyncClient(timeout=30) as client:
            stream = await _open_stream(client, running)
            async for _ in stream.aiter_bytes():
                break  # got the first event; now walk away
            await stream.aclose()
        assert await wait_async(lambda: engine.active == 0, 1.0)
        assert generated_tokens(running) - before < 480  # it stopped early
        started = time.perf_counter()
        reply = post(running, {"messages": HELLO, "temperature": 0}).json()
        assert reply["choices"][0]["message"]["content"] == DEMO_REPLIES["hello"][1]
        assert time.perf_counter() - started < 0.5

        # A non-streaming client that gives up is noticed too.
        before = generated_tokens(running)
        with pytest.raises(httpx.ReadTimeout):
            post(running, {"messages": HELLO, "max_tokens": 480, "ignore_eos": True}, timeout=0.05)
        assert wait_until(lambda: engine.active == 0, 1.0)
        assert wait_until(lambda: generated_tokens(running) > before, 1.0)
        assert generated_tokens(running) - before < 480


async def test_concurrent_streams_each_get_their_own_text_identical_to_alone(tiny_model):
    with serve(make_settings(tiny_model, max_batch_size=8)) as running:
        # Each prompt on each model has its own taught start, then random text (eos ignored).
        prompts = [(model, p) for p in list(DEMO_REPLIES)[:3] for model in ("demo-adapter", "demo-model")]

        async def stream_text(client, model_and_prompt):
            model, prompt = model_and_prompt
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 40,
                    "ignore_eos": True, "temperature": 0, "stream": True}
            parts = []
            async with client.stream("POST", running.base_url + "/v1/chat/completions", json=body,
                                     headers=running.headers()) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        choices = json.loads(line[6:])["choices"]
                        parts.append(choices[0]["delta"].get("content") or "" if choices else "")
            return "".join(parts)

        async with httpx.AsyncClient(timeout=30) as client:
            alone = [await stream_text(client, p) for p in prompts]
            running.state.engine.peak_batch = 0
            together = await asyncio.gather(*(stream_text(client, p) for p in prompts))
        assert running.state.engine.peak_batch >= 3
        assert list(together) == alone
        assert len(set(alone)) == len(prompts)


def test_metrics_in_prometheus_text_format(tiny_server):
    post(tiny_server, {"messages": HELLO, "temperature": 0})
    post(tiny_server, {"messages": HELLO}, headers={})
    response = httpx.get(tiny_server.base_url + "/metrics", headers=tiny_server.headers())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['aitk_requests_total{route="/v1/chat/completions",status="200"}'] >= 1
    assert samples['aitk_requests_total{route="/v1/chat/completions",status="401"}'] >= 1
    assert samples["aitk_generated_tokens_total"] > 0
    assert samples["aitk_queue_depth"] == 0 and "aitk_active_requests" in samples
    count = samples["aitk_time_to_first_token_seconds_count"]
    assert count >= 1 and samples['aitk_time_to_first_token_seconds_bucket{le="+Inf"}'] == count
    assert "# TYPE aitk_time_to_first_token_seconds histogram" in text


def test_access_logs_carry_no_prompts_and_no_keys(tiny_server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    secret_prompt = "my secret prompt 4711"
    post(tiny_server, {"messages": [{"role": "user", "content": secret_prompt}], "max_tokens": 3})
    post(tiny_server, {"messages": HELLO}, headers={"Authorization": "Bearer wrong-key-0042"})

    def access_records():
        return [r for r in caplog.records if r.name == "inference_server.access"]

    # The access line is written once the response is sent, so it can follow the client's read.
    assert wait_until(lambda: {200, 401} <= {r.fields["status"] for r in access_records()})
    access = access_records()
    assert all({"method", "path", "status", "duration_ms"} <= set(r.fields) for r in access)
    out, err = capfd.readouterr()
    everything = caplog.text + out + err + " ".join(json.dumps(r.fields) for r in access)
    for leak in (TEST_KEY, "wrong-key-0042", secret_prompt):
        assert leak not in everything


def test_without_a_key_on_loopback_only_loopback_hosts_and_json_bodies_are_answered(tiny_model):
    """A web page can reach a keyless loopback server: by DNS rebinding (its own name resolving
    to 127.0.0.1, so the Host header is the page's) or by a cross-origin text/plain POST, which
    needs no CORS preflight. Both are refused; curl and the OpenAI clients are not affected."""
    with serve(make_settings(tiny_model, api_key=None, allow_no_auth=True, max_batch_size=1)) as running:
        url = running.base_url + "/v1/chat/completions"
        body = json.dumps({"messages": HELLO, "max_tokens": 2})
        port = running.base_url.rsplit(":", 1)[1]
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io", "10.0.0.1"):
            for method, path in (("GET", "/v1/models"), ("GET", "/"), ("GET", "/health")):
                reply = httpx.request(method, running.base_url + path, headers={"Host": host})
                assert reply.status_code == 403, (host, path)
            reply = httpx.post(url, content=body, headers={"Host": host, "Content-Type": "application/json"})
            assert assert_error(reply, 403)["code"] == "host_not_allowed"
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            reply = httpx.post(url, content=body, headers={"Content-Type": ctype} if ctype else {})
            assert assert_error(reply, 415)["code"] == "unsupported_media_type", ctype
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"[::1]:{port}"):
            reply = httpx.post(url, content=body, headers={"Host": host, "Content-Type": "application/json; charset=utf-8"})
            assert reply.status_code == 200, host
        assert oai(running).models.list().data  # the OpenAI client sends JSON to 127.0.0.1
