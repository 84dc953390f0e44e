"""The realistic workload of ``server_bench.py --realistic``: our server beside the peer.

The peer is transformers' own ``transformers serve --continuous-batching`` (paged KV cache,
prefill mixed with decode), run on the same model in the same run and driven by the same
HTTP client code. Both get one torch thread.

How the workload is modelled (random weights cannot write real answers):

- **Model**: the random Phi-3 of ``build_medium`` (hidden 1024, 8 layers, about 27 ms per
  token alone on one thread), base only, since the peer has no LoRA.
- **Natural EOS**: greedy decoding of random weights falls into a loop within a few tokens
  and never reaches EOS, so clients sample at temperature 1 (as chat front-ends do) and
  the model's ``lm_head`` row for EOS gets a constant share of the direction that all of
  its final hidden states share (cosine about 0.93), sized so EOS has about a 1 in
  ``EOS_EVERY`` chance at each step. The model itself decides when to stop, with no
  counter: answers end at EOS at different times, or at their client's ``max_tokens``,
  which is spread between clients. The generation config says ``do_sample=True`` so the
  peer samples as well (it takes sampling settings from the model's config).
- **Clients**: 8, starting ``stagger`` seconds apart, with prompts spread between
  ``PROMPT_TOKENS`` tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

EOS_EVERY = 120  # mean steps to a sampled EOS (before max_tokens cuts it)
PROMPT_TOKENS = (20, 400)
MAX_TOKENS = (64, 320)
MARKER = "aitk_realistic.json"


def build_realistic(dest: Path, tiny_model_dir: Path, build_medium) -> Path:
    """The medium random model with EOS reachable under sampling (see the module doc)."""
    model_dir = dest / "medium-model"
    if (model_dir / MARKER).is_file():
        return model_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    build_medium(dest, tiny_model_dir)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    end = tok.convert_tokens_to_ids("<|end|>")
    hidden = []
    with torch.inference_mode():
        for i in range(4):
            enc = tok.apply_chat_template([{"role": "user", "content": f"say something about {i} " * (i + 1)}],
                                          add_generation_prompt=True, return_dict=True, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=48, do_sample=True, temperature=1.0,
                                 output_hidden_states=True, return_dict_in_generate=True)
            hidden += [step[-1][0, -1] for step in out.hidden_states]
        states = torch.stack(hidden)  # final (normed) hidden states
        direction = states.mean(0) / states.mean(0).norm()
        weight = model.lm_head.weight
        base_logits = states @ weight.T
        along = states @ direction
        lo, hi = 0.0, 1.0
        for _ in range(40):  # bisection: mean P(eos) over the collected states = 1 / EOS_EVERY
            alpha = (lo + hi) / 2
            logits = base_logits.clone()
            logits[:, end] += alpha * along
            p = torch.softmax(logits, dim=-1)[:, end].mean().item()
            lo, hi = (alpha, hi) if p < 1 / EOS_EVERY else (lo, alpha)
        weight[end] += alpha * direction
    model.generation_config = GenerationConfig(eos_token_id=[end], pad_token_id=tok.pad_token_id, do_sample=True,
                                               temperature=1.0, top_p=1.0)
    model.save_pretrained(model_dir)
    (model_dir / MARKER).write_text(json.dumps({"eos_every": EOS_EVERY, "alpha": alpha}), encoding="utf-8")
    return model_dir


@dataclass(frozen=True)
class Client:
    prompt: str
    prompt_tokens: int
    max_tokens: int
    start_s: float
    seed: int  # sent to our server only: its concurrent and sequential waves then make the same tokens


def workload(encode, n: int = 8, stagger: float = 0.25, seed: int = 0, variant: int = 0) -> list[Client]:
    """n clients: prompt lengths and max_tokens spread evenly, shuffled, ``stagger`` apart.

    ``variant`` changes the prompts' words only: the peer caches prompt prefixes, so each
    wave must send prompts it has not seen (real clients rarely repeat a whole prompt)."""
    rng = random.Random(seed)
    words_rng = random.Random(f"{seed}/{variant}")
    words = "the of and a to in is you that it he was for on are as with his they at be this have from".split()
    lengths = [round(PROMPT_TOKENS[0] + i * (PROMPT_TOKENS[1] - PROMPT_TOKENS[0]) / (n - 1)) for i in range(n)]
    caps = [round(MAX_TOKENS[0] + i * (MAX_TOKENS[1] - MAX_TOKENS[0]) / (n - 1)) for i in range(n)]
    rng.shuffle(lengths)
    rng.shuffle(caps)
    clients = []
    for i, (target, cap) in enumerate(zip(lengths, caps, strict=True)):
        text = words_rng.choice(words)
        while (count := len(encode(text))) < target:
            text += " " + words_rng.choice(words)
        clients.append(Client(text, count, cap, i * stagger, words_rng.randrange(2**31)))
    return clients


@dataclass
class Result:
    ttft_s: float
    total_s: float
    completion_tokens: int
    end_s: float  # since the wave started


async def stream_chunks(client: httpx.AsyncClient, url: str, headers: dict, body: dict
                        ) -> tuple[list[float], list[str], int]:
    """POST one streamed chat request: (the arrival time of each content chunk, the chunks,
    completion tokens). Reads ``usage`` wherever it comes (ours: a chunk with no choices; the
    peer: on the last choice chunk) and needs no ``data: [DONE]`` (the peer sends none)."""
    times: list[float] = []
    parts: list[str] = []
    completion = None
    async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            if event.get("usage"):
                completion = event["usage"]["completion_tokens"]
            choices = event.get("choices") or []
            content = (choices[0].get("delta") or {}).get("content") if choices else None
            if content:
                times.append(time.perf_counter())
                parts.append(content)
    if completion is None:
        raise RuntimeError("the stream carried no usage")
    return times, parts, completion


async def stream_chat(client: httpx.AsyncClient, url: str, headers: dict, model: str | None, prompt: str,
                      max_tokens: int, **extra) -> tuple[float, float, int]:
    """(time to first content, total time, completion tokens) of one streamed chat request."""
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    if model is not None:
        body["model"] = model
    started = time.perf_counter()
    times, _parts, completion = await stream_chunks(client, url, headers, body)
    end = time.perf_counter()
    return (times[0] if times else end) - started, end - started, completion


async def wave(url: str, headers: dict, model: str | None, clients: list[Client], temperature: float = 1.0,
               concurrent: bool = True, seeded: bool = False) -> tuple[float, list[Result]]:
    """All clients (each at its start offset), or one after another; (wall seconds, results).
    ``seeded``: each request carries its client's seed (the peer takes sampling settings
    from the model's config, so it is not sent there)."""
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=32)) as http:
        t0 = time.perf_counter()

        async def one(c: Client) -> Result:
            if concurrent:
                await asyncio.sleep(max(0.0, c.start_s - (time.perf_counter() - t0)))
            extra = {"seed": c.seed} if seeded else {}
            ttft, total, n = await stream_chat(http, url, headers, model, c.prompt, c.max_tokens,
                                               temperature=temperature, **extra)
            return Result(ttft, total, n, time.perf_counter() - t0)

        if concurrent:
            results = await asyncio.gather(*(one(c) for c in clients))
        else:
            results = [await one(c) for c in clients]
        return time.perf_counter() - t0, list(results)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (all threads). On a machine shared with other work, tokens
    per CPU second shift less with the load than tokens per wall second do."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.is_file():
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    import psutil  # not Linux

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def start_until_healthy(cmd: list[str], env: dict[str, str], url: str, what: str) -> tuple[subprocess.Popen, float]:
    """Start a server process and wait until its /health answers 200; (process, seconds to ready)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} died: " + proc.stderr.read()[-3000:])
        time.sleep(0.05)


class Peer:
    """``transformers serve --continuous-batching`` on the model folder, one torch thread."""

    def __init__(self, model_dir: Path, port: int, threads: int, num_blocks: int = 128, block_size: int = 64,
                 max_batch_tokens: int = 512):
        self.url = f"http://127.0.0.1:{port}"
        self.model = str(model_dir)  # the peer's model id is the path it loaded
        exe = Path(sys.executable).with_name("transformers")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        cmd = [str(exe), "serve", "--continuous-batching", "--device", "cpu", "--host", "127.0.0.1", "--port",
               str(port), "--cb-num-blocks", str(num_blocks), "--cb-block-size", str(block_size),
               "--cb-max-batch-tokens", str(max_batch_tokens), "--log-level", "warning", str(model_dir)]
        self.proc, self.ready_s = start_until_healthy(cmd, env, self.url, "the peer")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:  # its generation thread is not a daemon
            self.proc.kill()
            self.proc.wait(10)
