"""Benchmark of the inference server (not part of pytest). Prints figures and ratios.

    python benchmarks/server_bench.py              # tiny demo model (about 1 ms/token)
    python benchmarks/server_bench.py --medium     # also a random 1024x8 Phi-3 (tens of ms/token)
    python benchmarks/server_bench.py --realistic  # staggered clients, mixed lengths, EOS; vs the peer
    python benchmarks/server_bench.py --shapes abcdef --reps 2   # every traffic shape, vs the peer

``--shapes`` runs the traffic shapes of ``traffic_shapes.py`` (a burst of short prompts, the
realistic workload, long prompts, a multi-turn conversation to the context limit, a very long
prompt among running streams, sampled decoding), each on our server and on the peer in the
same run (order alternating between rounds), and prints ours/peer throughput, time to first
token and worst gap between tokens per shape, with the load average before and after each wave.

``--realistic`` runs only the realistic workload (``realistic_load.py`` says how it is
modelled) on our server and on ``transformers serve --continuous-batching``, same model,
same client code, rounds interleaved, and prints one table of ratios against the goals.
The rest of this text is about the default run.

For each model it starts the real server in a subprocess (``python -m inference_server``,
one torch thread) and measures, with greedy decoding and ``ignore_eos`` so every request
makes exactly ``--tokens`` tokens:

1. Streaming overhead: the same prompts through ``model.generate`` in this process, through
   the engine in this process (no HTTP), and as an SSE stream from the server, interleaved
   and compared by medians. On the tiny model the fixed per-token cost of HTTP dominates;
   judge overhead on the medium model, whose per-token time is realistic.
2. Throughput of 8 concurrent streams vs the same 8 one after another (goal >= 3x).
3. Time to first token with 1 and with 8 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

import realistic_load  # noqa: E402  (beside this file)
import traffic_shapes as shapes  # noqa: E402  (beside this file)

from inference_server.demo_model import build_demo_model  # noqa: E402

KEY = "bench-key"


def build_medium(dest: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A random Phi-3 with realistic per-token cost on a CPU (hidden 1024, 8 layers)."""
    model_dir, adapter_dir = dest / "medium-model", dest / "medium-adapter"
    if (adapter_dir / "adapter_config.json").is_file():
        return model_dir, adapter_dir
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, GenerationConfig, Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    end = tok.convert_tokens_to_ids("<|end|>")
    cfg = Phi3Config(vocab_size=len(tok), hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                     num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
                     original_max_position_embeddings=2048, bos_token_id=None, eos_token_id=end,
                     pad_token_id=tok.pad_token_id)
    model = Phi3ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=[end], pad_token_id=tok.pad_token_id)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)  # LoRA B starts at zero; make the adapter do something
    peft_model.save_pretrained(adapter_dir)
    return model_dir, adapter_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir: Path, adapter_dir: Path | None, threads: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "INFERENCE_API_KEY": KEY, "OMP_NUM_THREADS": str(threads)}
        adapter = ["--adapter", str(adapter_dir)] if adapter_dir is not None else ["--no-adapter"]
        cmd = [sys.executable, "-m", "inference_server", "--model", str(model_dir), *adapter,
               "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads), "--max-batch-size", "8",
               "--log-level", "warning"]
        self.proc, self.ready_s = realistic_load.start_until_healthy(cmd, env, self.url, "our server")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


async def sse_request(client: httpx.AsyncClient, url: str, prompt: str, tokens: int) -> tuple[float, float, int]:
    """(time to first content, total time, completion tokens) of one streamed request."""
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    completion = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {KEY}"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                completion = event["usage"]["completion_tokens"]
            if first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started, completion


async def server_ttft_totals(client: httpx.AsyncClient, url: str) -> tuple[float, float]:
    """(sum, count) of the server's own time-to-first-token histogram (arrival to first token)."""
    text = (await client.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})).text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("aitk_time_to_first_token"))
    name = "aitk_time_to_first_token_seconds"
    return float(values[f"{name}_sum"]), float(values[f"{name}_count"])


def prompts(n: int) -> list[str]:
    return [f"benchmark prompt {i}: tell me something about the number {i * 7}" for i in range(n)]


async def bench_model(label: str, model_dir: Path, adapter_dir: Path, args) -> dict:
    import torch

    from inference_server.engine import Engine
    from inference_server.handles import SamplingParams
    from inference_server.loading import load_model
    from inference_server.settings import ServerSettings

    torch.set_num_threads(args.threads)
    settings = ServerSettings(model_path=model_dir, adapter_path=adapter_dir, threads=args.threads,
                              api_key=KEY, device="cpu")
    loaded = load_model(settings)
    engine = Engine(loaded, max_batch_size=8)
    engine.start()
    server = Server(model_dir, adapter_dir, args.threads)
    n = args.tokens
    out: dict = {"label": label, "server_ready_s": server.ready_s}
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            await sse_request(client, server.url, "warm up", 8)
            # 1. overhead: interleave direct generate, the engine alone, and SSE on the same prompts
            gen_t, eng_t, sse_t, ttft1 = [], [], [], []
            for prompt in prompts(args.pairs):
                ids = loaded.encode_chat([{"role": "user", "content": prompt}])
                enc = torch.tensor([ids])
                t = time.perf_counter()
                with torch.inference_mode():
                    loaded.model.generate(input_ids=enc, attention_mask=torch.ones_like(enc), max_new_tokens=n,
                                          min_new_tokens=n, do_sample=False)
                gen_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                handle = engine.submit(ids, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True),
                                       use_adapter=True, timeout_s=600)
                await handle.result()
                eng_t.append(time.perf_counter() - t)
                ttft, total, completion = await sse_request(client, server.url, prompt, n)
                assert completion == n, completion
                sse_t.append(total)
                ttft1.append(ttft)
            out.update(generate_s=statistics.median(gen_t), engine_s=statistics.median(eng_t),
                       sse_s=statistics.median(sse_t), ttft_1_s=statistics.median(ttft1))
            # 2. 8 one after another vs 8 at once (median of --reps rounds each)
            eight = prompts(8)
            # What batching can give at best on this machine: model.generate on all 8 at once.
            batch = loaded.tokenizer.apply_chat_template([[{"role": "user", "content": p}] for p in eight],
                                                         add_generation_prompt=True, return_tensors="pt",
                                                         padding=True, return_dict=True)
            t = time.perf_counter()
            with torch.inference_mode():
                loaded.model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            out["generate8_s"] = time.perf_counter() - t
            seq_runs, conc_runs, ttfts, server_ttft = [], [], [], []
            for _ in range(args.reps):
                t = time.perf_counter()
                for prompt in eight:
                    await sse_request(client, server.url, prompt, n)
                seq_runs.append(time.perf_counter() - t)
                before = await server_ttft_totals(client, server.url)
                t = time.perf_counter()
                results = await asyncio.gather(*(sse_request(client, server.url, p, n) for p in eight))
                conc_runs.append(time.perf_counter() - t)
                after = await server_ttft_totals(client, server.url)
                server_ttft.append((after[0] - before[0]) / max(1, after[1] - before[1]))
                assert all(r[2] == n for r in results)
                ttfts.append(sorted(r[0] for r in results))
            mid = sorted(range(args.reps), key=lambda i: conc_runs[i])[args.reps // 2]
            out.update(seq8_s=statistics.median(seq_runs), conc8_s=statistics.median(conc_runs),
                       ttft_8_median_s=statistics.median(ttfts[mid]), ttft_8_max_s=ttfts[mid][-1],
                       ttft_8_server_mean_s=statistics.median(server_ttft))
    finally:
        server.close()
        engine.stop()
    return out


def report(r: dict, tokens: int) -> None:
    per_token_ms = r["generate_s"] / tokens * 1000
    print(f"\n== {r['label']} ({per_token_ms:.2f} ms/token with model.generate; server ready in "
          f"{r['server_ready_s']:.1f} s)")
    print(f"  {tokens} tokens, medians: generate {r['generate_s'] * 1000:.1f} ms | engine (no HTTP) "
          f"{r['engine_s'] * 1000:.1f} ms | HTTP SSE {r['sse_s'] * 1000:.1f} ms")
    print(f"  streaming overhead vs generate: {100 * (r['sse_s'] / r['generate_s'] - 1):+.1f} %   "
          f"vs engine: {100 * (r['sse_s'] / r['engine_s'] - 1):+.1f} %   "
          f"({(r['sse_s'] - r['engine_s']) / tokens * 1000:.2f} ms/token over the engine)")
    total = 8 * tokens
    print(f"  8 sequential: {r['seq8_s']:.2f} s ({total / r['seq8_s']:.0f} tok/s) | 8 concurrent: "
          f"{r['conc8_s']:.2f} s ({total / r['conc8_s']:.0f} tok/s) | throughput ratio "
          f"{r['seq8_s'] / r['conc8_s']:.2f}x (goal >= 3x)")
    print(f"  for scale, model.generate on the 8 as one batch: {r['generate8_s']:.2f} s, "
          f"{8 * r['generate_s'] / r['generate8_s']:.2f}x the speed of 8 single generate calls")
    print(f"  time to first token (client-side): 1 client {r['ttft_1_s'] * 1000:.1f} ms | 8 clients median "
          f"{r['ttft_8_median_s'] * 1000:.1f} ms, max {r['ttft_8_max_s'] * 1000:.1f} ms "
          f"(server-side mean at 8: {r['ttft_8_server_mean_s'] * 1000:.1f} ms)")


async def bench_realistic(args) -> dict:
    """The realistic workload (``realistic_load``): each round runs four waves, ours and the
    peer each concurrent and one after another (order alternating), so every ratio is taken
    within one round, under the same load."""
    import torch

    from inference_server.loading import load_model
    from inference_server.settings import ServerSettings

    tiny = build_demo_model(args.cache / "tiny")
    model_dir = realistic_load.build_realistic(args.cache / "realistic", tiny.model_dir, build_medium)
    torch.set_num_threads(args.threads)
    loaded = load_model(ServerSettings(model_path=model_dir, no_adapter=True, threads=args.threads, api_key=KEY,
                                       device="cpu"))
    def clients_of(variant: int) -> list:  # same lengths and caps, words never sent before
        return realistic_load.workload(lambda text: loaded.encode_chat([{"role": "user", "content": text}]),
                                       stagger=args.stagger, variant=variant)

    clients = clients_of(0)
    ours = Server(model_dir, None, args.threads)
    peer = realistic_load.Peer(model_dir, free_port(), args.threads)
    auth = {"Authorization": f"Bearer {KEY}"}
    targets = {"ours": (ours.url, auth, None, ours.proc.pid), "peer": (peer.url, {}, peer.model, peer.proc.pid)}
    out: dict = {"clients": clients, "ours_ready_s": ours.ready_s, "peer_ready_s": peer.ready_s, "rounds": []}
    try:
        async with httpx.AsyncClient(timeout=600) as http:
            for url, headers, model, _ in targets.values():  # the peer sets up its batching on the first request
                await realistic_load.stream_chat(http, url, headers, model, "warm up", 8, temperature=1.0)
            # Single stream: direct generate vs our SSE, same prompts and token counts, interleaved.
            n = args.tokens
            gen_t, sse_t = [], []
            for i in range(args.medium_pairs):
                c = clients[i % len(clients)]
                enc = torch.tensor([loaded.encode_chat([{"role": "user", "content": c.prompt}])])
                t = time.perf_counter()
                with torch.inference_mode():
                    loaded.model.generate(input_ids=enc, attention_mask=torch.ones_like(enc), max_new_tokens=n,
                                          min_new_tokens=n, do_sample=False)
                gen_t.append(time.perf_counter() - t)
                _, total, completion = await realistic_load.stream_chat(
                    http, ours.url, auth, None, c.prompt, n, temperature=0, ignore_eos=True)
                assert completion == n, completion
                sse_t.append(total)
            out.update(generate_s=statistics.median(gen_t), sse_s=statistics.median(sse_t),
                       overhead_load=os.getloadavg()[0])
        waves = [(name, concurrent) for concurrent in (True, False) for name in ("ours", "peer")]
        for rep in range(args.reps):
            round_: dict = {}
            for k, (name, concurrent) in enumerate(waves if rep % 2 == 0 else waves[::-1]):
                url, headers, model, pid = targets[name]
                cpu, load = realistic_load.cpu_seconds(pid), os.getloadavg()[0]
                # Ours: the same prompts and seeds concurrent and sequential, so both waves make
                # the same answers (it caches no prompts). The peer caches prompt prefixes, so
                # each of its waves gets words it has not seen.
                variant = 1 + 4 * rep + (0 if name == "ours" else 1 + k)
                wall, results = await realistic_load.wave(url, headers, model, clients_of(variant),
                                                          concurrent=concurrent, seeded=name == "ours")
                round_[name, concurrent] = {"wall": wall, "results": results, "load": (load + os.getloadavg()[0]) / 2,
                                            "cpu": realistic_load.cpu_seconds(pid) - cpu}
            out["rounds"].append(round_)
    finally:
        ours.close()
        peer.close()
    return out


def _figures(wave: dict) -> dict:
    tokens = sum(r.completion_tokens for r in wave["results"])
    ttft = [r.ttft_s for r in wave["results"]]
    return {"tps": tokens / wave["wall"], "tokens": tokens, "tpc": tokens / wave["cpu"], "load": wave["load"],
            "ttft_med": statistics.median(ttft), "ttft_max": max(ttft)}


def report_realistic(r: dict, args) -> None:
    clients = r["clients"]
    rounds = [{key: _figures(wave) for key, wave in round_.items()} for round_ in r["rounds"]]

    def med(fn) -> float:  # the median over rounds of a figure taken within each round
        return statistics.median(fn(x) for x in rounds)

    def per_round(fn, fmt: str = "{:.2f}") -> str:
        return ", ".join(fmt.format(fn(x)) for x in rounds)

    oc, pc, os_, ps = ("ours", True), ("peer", True), ("ours", False), ("peer", False)
    overhead = 100 * (r["sse_s"] / r["generate_s"] - 1)
    print(f"\n== realistic workload: random Phi-3 (hidden 1024 x 8 layers), {args.threads} torch thread(s), "
          f"{len(clients)} clients {args.stagger * 1000:.0f} ms apart, prompts "
          f"{min(c.prompt_tokens for c in clients)}-{max(c.prompt_tokens for c in clients)} tokens, max_tokens "
          f"{min(c.max_tokens for c in clients)}-{max(c.max_tokens for c in clients)}, sampled EOS about 1 in "
          f"{realistic_load.EOS_EVERY} steps; {len(rounds)} rounds of 4 waves, ratios taken within each round")
    print(f"  servers ready in: ours {r['ours_ready_s']:.1f} s, peer {r['peer_ready_s']:.1f} s; load (1-min average) "
          f"per round: {per_round(lambda x: statistics.mean(f['load'] for f in x.values()), '{:.1f}')}")
    rows = [
        ("8-concurrent throughput, ours / peer", lambda x: x[oc]["tps"] / x[pc]["tps"], ">= 1x"),
        ("8-concurrent / sequential, ours", lambda x: x[oc]["tps"] / x[os_]["tps"], ">= 3x"),
        ("8-concurrent / sequential, the peer", lambda x: x[pc]["tps"] / x[ps]["tps"], "(for scale)"),
        ("tokens per CPU second, ours / peer (concurrent)", lambda x: x[oc]["tpc"] / x[pc]["tpc"], ""),
        ("tokens per CPU second, concurrent / sequential, ours", lambda x: x[oc]["tpc"] / x[os_]["tpc"], ""),
        ("tokens per CPU second, concurrent / sequential, peer", lambda x: x[pc]["tpc"] / x[ps]["tpc"], ""),
        ("TTFT at 8 concurrent (median), ours / peer", lambda x: x[oc]["ttft_med"] / x[pc]["ttft_med"], "<= 1x"),
        ("TTFT at 8 concurrent (worst), ours / peer", lambda x: x[oc]["ttft_max"] / x[pc]["ttft_max"], ""),
    ]
    print(f"  {'figure':<54} {'median':>7}  {'goal':<12} per round")
    for name, fn, goal in rows:
        print(f"  {name:<54} {med(fn):>6.2f}x  {goal:<12} {per_round(fn)}")
    print(f"  {'single-stream overhead vs generate':<54} {overhead:>+6.1f}%  {'<= 5 %':<12} "
          f"{r['sse_s']:.2f} s vs {r['generate_s']:.2f} s for {args.tokens} tokens (load {r['overhead_load']:.1f})")
    for key, label in ((oc, "ours, concurrent"), (pc, "peer, concurrent"), (os_, "ours, sequential"),
                       (ps, "peer, sequential")):
        print(f"  {label:<17} tok/s {per_round(lambda x, k=key: x[k]['tps'], '{:.1f}')} | tokens "
              f"{per_round(lambda x, k=key: x[k]['tokens'], '{}')} | TTFT median/worst s "
              f"{per_round(lambda x, k=key: x[k]['ttft_med'], '{:.1f}')} / {per_round(lambda x, k=key: x[k]['ttft_max'], '{:.1f}')}")
    print("  clients (start s, prompt tokens, max_tokens): "
          + ", ".join(f"({c.start_s:.2f}, {c.prompt_tokens}, {c.max_tokens})" for c in clients))
    print("  the bound on concurrent / sequential for any engine: python benchmarks/engine_breakdown.py")


SHAPE_NAMES = {"a": "burst of 8 short", "b": "realistic (staggered)", "c": "long prompts 1-4k",
               "d": "multi-turn to the context limit", "e": "very long prompt among running streams",
               "f": "sampled, temperature 0.7 + top_p 0.9"}


def shape_models(args) -> dict[str, Path]:
    """The model folder of each shape (see traffic_shapes.py)."""
    tiny = build_demo_model(args.cache / "tiny")
    realistic = realistic_load.build_realistic(args.cache / "realistic", tiny.model_dir, build_medium)
    medium, _ = build_medium(args.cache / "medium", tiny.model_dir)
    long = shapes.model_variant(medium, args.cache / "medium-8k", context=8192)
    sampled = shapes.model_variant(realistic, args.cache / "realistic-sampled",
                                   sampling={"do_sample": True, "temperature": 0.7, "top_p": 0.9})
    return {"a": medium, "d": medium, "c": long, "e": long, "b": realistic, "f": sampled}


async def run_shape(letter: str, target, encode_chat, variant: int, context: int) -> dict:
    """One wave of a shape on one server: figures, with the load average before and after."""
    def encode(text: str) -> list[int]:
        return encode_chat(shapes.chat(text))

    load = os.getloadavg()[0]
    out: dict = {}
    if letter == "a":
        wall, streams = await shapes.wave(target, shapes.burst(encode, variant))
    elif letter == "b":
        clients = realistic_load.workload(encode, variant=variant)
        wall, streams = await shapes.wave(target, [shapes.Request(shapes.chat(c.prompt), c.max_tokens, c.start_s, {
            "temperature": 1.0, "seed": c.seed}) for c in clients])
    elif letter == "c":
        wall, streams = await shapes.wave(target, shapes.long_prompts(encode, variant))
    elif letter == "d":
        wall, streams = await shapes.conversations(target, encode_chat, variant, context)
        out["turns"] = len(streams)
        out["last_ttft"] = max(s.ttft_s for s in streams[-2:])
    elif letter == "e":
        with_long, alone, short_alone = shapes.long_among_running(encode, variant)
        _, base = await shapes.wave(target, alone)
        _, short_base = await shapes.wave(target, [short_alone])
        wall, streams = await shapes.wave(target, with_long)
        running = [s for s in streams if s.tag == "running"]
        out.update(base_gap=max(s.worst_gap for s in base), running_gap=max(s.worst_gap for s in running),
                   short_alone=short_base[0].ttft_s, short_ttft=next(s for s in streams if s.tag == "short").ttft_s,
                   long_ttft=next(s for s in streams if s.tag == "long").ttft_s)
    else:
        wall, streams = await shapes.wave(target, shapes.sampled(encode, variant))
    out.update(shapes.figures(wall, streams), load=(load, os.getloadavg()[0]))
    return out


async def bench_shapes(args) -> dict:
    from transformers import AutoTokenizer

    models = shape_models(args)
    wanted = [x for x in "abcdef" if x in args.shapes]
    out: dict = {x: [] for x in wanted}
    by_model: dict[Path, list[str]] = {}
    for letter in wanted:
        by_model.setdefault(models[letter], []).append(letter)
    auth = {"Authorization": f"Bearer {KEY}"}
    for model_dir, letters in by_model.items():
        tok = AutoTokenizer.from_pretrained(model_dir)
        context = json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]

        def encode_chat(messages, tok=tok):
            return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=False))

        ours = Server(model_dir, None, args.threads)
        peer = realistic_load.Peer(model_dir, free_port(), args.threads, num_blocks=max(128, 2 * context // 64 + 64))
        targets = {"ours": (ours.url, auth, None), "peer": (peer.url, {}, peer.model)}
        try:
            async with httpx.AsyncClient(timeout=600) as http:
                for url, headers, model in targets.values():  # the peer sets up its batching on the first request
                    await realistic_load.stream_chat(http, url, headers, model, "warm up", 8)
            for letter in letters:
                for rep in range(args.reps):
                    round_ = {}
                    for k, name in enumerate(("ours", "peer") if rep % 2 == 0 else ("peer", "ours")):
                        # Words neither server has seen (the peer caches prompt prefixes).
                        variant = 10 * rep + k + (100 if name == "peer" else 0)
                        round_[name] = await run_shape(letter, targets[name], encode_chat, variant, context)
                        print(f"  [{letter} round {rep + 1} {name}: {round_[name]['tps']:.1f} tok/s, load "
                              f"{round_[name]['load'][0]:.1f} -> {round_[name]['load'][1]:.1f}]", flush=True)
                    out[letter].append(round_)
        finally:
            ours.close()
            peer.close()
    return out


def report_shapes(r: dict, args) -> None:
    print(f"\n== traffic shapes, ours vs `transformers serve --continuous-batching`, random Phi-3 (hidden 1024 x 8 "
          f"layers), {args.threads} torch thread(s), {args.reps} round(s) each; per round: ours / peer")
    print(f"  {'shape':<42} {'throughput':<14} {'TTFT median':<14} {'worst gap':<14} load (1-min) before->after, "
          "ours | peer")
    for letter, rounds in r.items():
        def col(key: str) -> str:
            return ", ".join(f"{x['ours'][key] / x['peer'][key]:.2f}x" for x in rounds)

        loads = "; ".join(f"{x['ours']['load'][0]:.1f}->{x['ours']['load'][1]:.1f} | "
                          f"{x['peer']['load'][0]:.1f}->{x['peer']['load'][1]:.1f}" for x in rounds)
        print(f"  ({letter}) {SHAPE_NAMES[letter]:<38} {col('tps'):<14} {col('ttft_med'):<14} {col('gap'):<14} {loads}")
        for x in rounds:
            for name in ("ours", "peer"):
                f = x[name]
                extra = ""
                if letter == "d":
                    extra = f", {f['turns']} turns, last turn's TTFT {f['last_ttft']:.2f} s"
                if letter == "e":
                    extra = (f"; running streams' worst gap {f['running_gap']:.2f} s vs {f['base_gap']:.2f} s without "
                             f"the long prompt ({f['running_gap'] / f['base_gap']:.1f}x, goal <= 3x); short TTFT "
                             f"{f['short_ttft']:.2f} s vs {f['short_alone']:.2f} s alone "
                             f"({f['short_ttft'] / f['short_alone']:.1f}x, goal <= 3x); long TTFT {f['long_ttft']:.1f} s")
                print(f"      {name}: {f['tps']:.1f} tok/s ({f['tokens']} tokens in {f['wall']:.1f} s), TTFT median "
                      f"{f['ttft_med']:.2f} s worst {f['ttft_max']:.2f} s, worst gap {f['gap']:.2f} s{extra}")
    print("  the bound on concurrent / sequential (realistic shape): python benchmarks/engine_breakdown.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--medium", action="store_true", help="also benchmark a random hidden-1024 x 8-layer model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=15, help="interleaved overhead samples (tiny)")
    parser.add_argument("--medium-pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="rounds of the 8-stream comparison (medians)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "aitk-bench-models")
    parser.add_argument("--realistic", action="store_true",
                        help="only the realistic workload, ours vs `transformers serve --continuous-batching`")
    parser.add_argument("--stagger", type=float, default=0.25, help="seconds between client starts (realistic)")
    parser.add_argument("--shapes", default="", metavar="LETTERS",
                        help="traffic shapes to run against the peer (traffic_shapes.py), e.g. abcdef")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, torch threads {args.threads}")
    if args.shapes:
        report_shapes(asyncio.run(bench_shapes(args)), args)
        return 0
    if args.realistic:
        report_realistic(asyncio.run(bench_realistic(args)), args)
        return 0
    tiny = build_demo_model(args.cache / "tiny")
    results = [asyncio.run(bench_model("tiny demo model (257k params)", tiny.model_dir, tiny.adapter_dir, args))]
    report(results[0], args.tokens)
    if args.medium:
        model_dir, adapter_dir = build_medium(args.cache / "medium", tiny.model_dir)
        args.pairs = args.medium_pairs
        results.append(asyncio.run(bench_model("medium random model (hidden 1024 x 8 layers)", model_dir,
                                               adapter_dir, args)))
        report(results[-1], args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
