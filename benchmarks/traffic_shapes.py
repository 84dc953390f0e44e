"""The traffic shapes of ``server_bench.py --shapes`` (issue 21), each run on our server and on
the peer (``transformers serve --continuous-batching``) with the same client code.

(a) burst: 8 short chat prompts (20-27 tokens) sent at the same moment, 64 tokens, greedy.
(b) realistic: ``realistic_load``'s staggered clients (20-400 tokens, sampled EOS).
(c) long: 4 prompts of 1,000-4,000 tokens, 0.5 s apart, 16-token answers, greedy.
(d) multi-turn: 2 conversations at once whose history (each answer fed back) grows turn by
    turn until the next turn would overrun the context (2,048 tokens).
(e) long among running: 4 streams decoding, then a 3,000-token prompt, then 1 s later a short
    request; against the same 4 streams alone and the short request alone.
(f) sampled: 8 clients 0.1 s apart, 20-200 tokens, temperature 0.7 and top_p 0.9 (the chat's
    own defaults), the realistic model's sampled EOS.

Greedy shapes use a random Phi-3 (hidden 1024, 8 layers) whose greedy text never reaches EOS,
so every answer runs to ``max_tokens`` on both servers. The peer takes its sampling settings
from the model's generation config, not from the request, so each shape's model folder holds
the settings the shape sends us (``model_variant``). A 1-thread CPU cannot prefill 64,000
tokens in a benchmark's time, so the "very long" prompt of (e) is 3,000 tokens (context 8,192).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from realistic_load import stream_chunks  # beside this file: one reader of the SSE stream

WORDS = "the of and a to in is you that it he was for on are as with his they at be this have from".split()


def model_variant(src: Path, dest: Path, *, context: int | None = None, sampling: dict | None = None) -> Path:
    """A folder that shares ``src``'s weights and tokenizer (symbolic links) with another
    context length or generation config."""
    if (dest / "config.json").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name not in ("config.json", "generation_config.json"):
            (dest / item.name).symlink_to(item.resolve())
    config = json.loads((src / "config.json").read_text())
    if context is not None:
        config["max_position_embeddings"] = config["original_max_position_embeddings"] = context
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    gen = json.loads((src / "generation_config.json").read_text())
    if sampling is not None:
        gen.update(sampling)
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=1))
    return dest


def text_of(encode, tokens: int, rng: random.Random, prefix: str = "") -> str:
    """A user message whose chat prompt is about ``tokens`` tokens."""
    text = prefix + rng.choice(WORDS)
    step = max(1, (tokens - len(encode(text))) // 2)
    while (n := len(encode(text))) < tokens:
        text += " " + " ".join(rng.choice(WORDS) for _ in range(max(1, min(step, (tokens - n) // 2))))
    return text


@dataclass
class Request:
    messages: list[dict]
    max_tokens: int
    start_s: float = 0.0
    sampling: dict = field(default_factory=dict)  # sent to our server only (the peer reads its config)
    tag: str = ""


@dataclass
class Stream:
    tag: str
    ttft_s: float
    total_s: float
    completion_tokens: int
    gaps: list[float]  # seconds between consecutive content chunks
    text: str = ""

    @property
    def worst_gap(self) -> float:
        return max(self.gaps, default=0.0)


async def stream(http: httpx.AsyncClient, target, request: Request, t0: float) -> Stream:
    url, headers, model = target
    body = {"messages": request.messages, "max_tokens": request.max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    if model is None:
        body.update(request.sampling)
    else:
        body["model"] = model
    await asyncio.sleep(max(0.0, request.start_s - (time.perf_counter() - t0)))
    started = time.perf_counter()
    times, parts, completion = await stream_chunks(http, url, headers, body)
    end = time.perf_counter()
    ttft = (times[0] if times else end) - started
    return Stream(request.tag, ttft, end - started, completion, [b - a for a, b in zip(times, times[1:])],
                  "".join(parts))


async def wave(target, requests: list[Request]) -> tuple[float, list[Stream]]:
    async with httpx.AsyncClient(timeout=1800, limits=httpx.Limits(max_connections=64)) as http:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream(http, target, r, t0) for r in requests))
        return time.perf_counter() - t0, list(results)


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


GREEDY = {"temperature": 0}


def burst(encode, variant: int) -> list[Request]:
    rng = random.Random(f"burst/{variant}")
    return [Request(chat(text_of(encode, 20 + i, rng, f"question {variant}-{i}: ")), 64, 0.0, GREEDY, "burst")
            for i in range(8)]


def long_prompts(encode, variant: int) -> list[Request]:
    rng = random.Random(f"long/{variant}")
    return [Request(chat(text_of(encode, n, rng, f"document {variant}-{i}: ")), 16, 0.5 * i, GREEDY, "long")
            for i, n in enumerate((1000, 2000, 3000, 4000))]


def sampled(encode, variant: int) -> list[Request]:
    rng = random.Random(f"sampled/{variant}")
    return [Request(chat(text_of(encode, 20 + 180 * i // 7, rng, f"chat {variant}-{i}: ")), 96 + 16 * i, 0.1 * i,
                    {"temperature": 0.7, "top_p": 0.9, "seed": rng.randrange(2**31)}, "sampled")
            for i in range(8)]


def running_streams(encode, variant: int) -> list[Request]:
    rng = random.Random(f"running/{variant}")
    return [Request(chat(text_of(encode, 30 + 10 * i, rng, f"stream {variant}-{i}: ")), 160, 0.0, GREEDY, "running")
            for i in range(4)]


def long_among_running(encode, variant: int) -> tuple[list[Request], list[Request], Request]:
    """(the 4 running streams with the long prompt and the short request, the 4 alone, the short alone)."""
    rng = random.Random(f"among/{variant}")
    long = Request(chat(text_of(encode, 3000, rng, f"very long {variant}: ")), 8, 1.5, GREEDY, "long")
    short = Request(chat(text_of(encode, 24, rng, f"short {variant}: ")), 8, 2.5, GREEDY, "short")
    short_alone = Request(short.messages, 8, 0.0, GREEDY, "short")
    return running_streams(encode, variant) + [long, short], running_streams(encode, variant + 1000), short_alone


async def conversations(target, encode, variant: int, context: int, n: int = 2, answer: int = 24,
                        turn_tokens: int = 160) -> tuple[float, list[Stream]]:
    """``n`` conversations at once; each turn sends the whole history (answers fed back) and
    they go on until the next turn would not fit the context."""
    results: list[Stream] = []

    async def one(http, k: int):
        rng = random.Random(f"conv/{variant}/{k}")
        messages: list[dict] = []
        t0 = time.perf_counter()
        await asyncio.sleep(0.3 * k)
        while True:
            messages.append({"role": "user", "content": text_of(lambda t: encode([{"role": "user", "content": t}]),
                                                                 turn_tokens, rng, f"turn {len(messages)}: ")})
            if len(encode(messages)) + answer + 8 > context:
                return
            s = await stream(http, target, Request(list(messages), answer, 0.0, GREEDY, "turn"), t0)
            results.append(s)
            messages.append({"role": "assistant", "content": s.text})

    async with httpx.AsyncClient(timeout=1800) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(http, k) for k in range(n)))
        return time.perf_counter() - t0, results


def figures(wall: float, streams: list[Stream]) -> dict:
    tokens = sum(s.completion_tokens for s in streams)
    return {"tps": tokens / wall, "tokens": tokens, "wall": wall,
            "ttft_med": statistics.median(s.ttft_s for s in streams), "ttft_max": max(s.ttft_s for s in streams),
            "gap": max(s.worst_gap for s in streams)}
