"""tok/s is what the reply really took: a reply delivered in a few bursts (a buffering proxy,
a server that sends many tokens per chunk) reads its rate over the whole request, not over
the microseconds between its first and last chunk (21981.7 tok/s was shown)."""

from __future__ import annotations

import asyncio

import httpx

from tests.test_chat_client import HELLO, chunk, collect, scripted, sse


def usage(completion: int) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": completion, "total_tokens": 5 + completion}}


async def test_a_reply_in_two_bursts_reads_its_rate_over_the_request():
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.25)  # the server worked, then sent 200 tokens in two chunks
        body = sse(chunk("a " * 100), chunk("b " * 100), chunk(finish="stop"), usage(200))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = scripted(handler)
    try:
        _text, finished = await collect(client, HELLO, model="m")
    finally:
        await client.aclose()
    assert finished.tokens_per_s is not None
    assert 200 / 1.0 < finished.tokens_per_s <= 200 / 0.25  # at most 200 tokens over the 0.25 s it took


async def test_a_token_by_token_stream_reads_its_decode_rate():
    class Paced(httpx.AsyncByteStream):
        async def __aiter__(self):
            for i in range(20):
                await asyncio.sleep(0.01)
                yield sse(chunk(f"t{i} "), done=False)
            yield sse(chunk(finish="stop"), usage(20))

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Paced(), headers={"content-type": "text/event-stream"})

    client = scripted(handler)
    try:
        _text, finished = await collect(client, HELLO, model="m")
    finally:
        await client.aclose()
    assert 10 < finished.tokens_per_s <= 19 / 0.19 * 1.05  # ~19 tokens over ~0.19 s between first and last
