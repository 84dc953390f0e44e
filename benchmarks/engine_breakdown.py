"""Where the engine's time goes on the realistic workload (not part of pytest).

    python benchmarks/engine_breakdown.py [--rounds 2] [--stagger 0.25] [--packed on|off|both]
                                          [--skip-padding on|off|both] [--threads 1]
                                          [--shape realistic|burst|sampled] [--fold on|off]

``--packed`` and ``--skip-padding`` switch the engine's two CPU paths (``cpu_linear.py``,
``cpu_attention.py``) in this process; with ``both`` the workload runs once per setting and
the last line compares the last setting with the first.

The workload of ``server_bench.py --realistic`` (``realistic_load.py``), driven through the
engine in this process (no HTTP, so only the engine is measured), once with the clients
staggered and once one after another, with the same seeds so both make the same tokens.
Every prefill and decode step is traced (``Engine.trace``) with its wall and CPU time; a
decode step with prefill folded into its forward (``fold.py``, traced "mixed") is counted
apart, in the engine's CPU time but not in the step costs the bound is fitted to.

Printed per run: prefill vs decode time, decode steps and rows per step (occupancy),
padded KV-cache cells against real ones, time the engine was idle or in between steps.
Then the upper bound for batching on this workload, from the engine's own thread CPU
times in the same round (CPU time, so other load on the machine matters less than it
does to wall time):

    bound = sequential time / (sum of prefills + decode of all rows in lockstep)

Prefill on one thread is compute-bound (linear in prompt tokens; batching prompts saves
little), so it cannot be batched away. The lockstep decode is the best case for batching:
every row decodes from the first step, as if no client started later, and a step with k
rows costs what the staggered run's k-row steps cost. The measured ratio to hold against
the bound is the CPU one (engine CPU sequential / concurrent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import realistic_load  # noqa: E402
import server_bench  # noqa: E402
import traffic_shapes  # noqa: E402

from inference_server.demo_model import build_demo_model  # noqa: E402


def shape_workload(shape: str, encode, variant: int) -> tuple[list, dict]:
    """The clients (prompt, max_tokens, start_s) of a shape and the sampling they all use
    (each client also gets its own seed): ``realistic`` (the default), or the ``burst`` and
    ``sampled`` shapes of ``traffic_shapes.py``."""
    if shape == "realistic":
        return realistic_load.workload(encode, stagger=STAGGER[0], variant=variant), {"temperature": 1.0}
    maker = traffic_shapes.burst if shape == "burst" else traffic_shapes.sampled
    requests = maker(encode, variant)
    clients = [realistic_load.Client(r.messages[0]["content"], 0, r.max_tokens, r.start_s, 0) for r in requests]
    if shape == "burst":
        return clients, {"temperature": 0.0, "ignore_eos": True}
    return clients, {"temperature": 0.7, "top_p": 0.9}


STAGGER = [0.25]
FOLD = [True]


async def run_wave(loaded, clients, seeds, concurrent: bool, sampling: dict | None = None) -> dict:
    from inference_server.engine import Engine
    from inference_server.handles import SamplingParams

    trace: list[tuple] = []
    engine = Engine(loaded, max_batch_size=8, fold=FOLD[0])
    engine.trace = lambda *a: trace.append((time.perf_counter(), *a))
    engine.start()
    try:
        t0 = time.perf_counter()

        async def one(i: int, c) -> tuple:
            if concurrent:
                await asyncio.sleep(max(0.0, c.start_s - (time.perf_counter() - t0)))
            ids = loaded.encode_chat([{"role": "user", "content": c.prompt}])
            handle = engine.submit(ids, SamplingParams(max_tokens=c.max_tokens, seed=seeds[i],
                                                       **(sampling or {"temperature": 1.0})),
                                   use_adapter=False, timeout_s=3600)
            _, done = await handle.result()
            return len(ids), done

        if concurrent:
            results = await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        else:
            results = [await one(i, c) for i, c in enumerate(clients)]
        wall = time.perf_counter() - t0
    finally:
        engine.stop()
    return {"wall": wall, "trace": trace, "prompt": [p for p, _ in results],
            "tokens": [d.completion_tokens for _, d in results], "ttft": [d.ttft_s for _, d in results]}


def describe(label: str, run: dict) -> dict:
    trace = run["trace"]
    pre = [t for t in trace if t[1] == "prefill"]
    dec = [t for t in trace if t[1] == "decode"]
    mixed = [t for t in trace if t[1] == "mixed"]  # a decode step and prefill in one forward (fold.py)
    f = {
        "prefill_s": sum(t[2] for t in pre), "prefill_cpu": sum(t[3] for t in pre),
        "decode_s": sum(t[2] for t in dec), "decode_cpu": sum(t[3] for t in dec),
        "mixed_s": sum(t[2] for t in mixed), "mixed_cpu": sum(t[3] for t in mixed),
        "steps": len(dec), "row_steps": sum(t[4] for t in dec),
    }
    tokens = sum(run["tokens"])
    busy = f["prefill_s"] + f["decode_s"] + f["mixed_s"]
    print(f"  {label}: wall {run['wall']:.2f} s, {tokens} tokens ({tokens / run['wall']:.1f} tok/s); "
          f"engine busy {busy:.2f} s (idle or between steps {run['wall'] - busy:.2f} s)")
    print(f"    prefill: {len(pre)} forwards, {f['prefill_s']:.2f} s wall / {f['prefill_cpu']:.2f} s CPU, "
          f"{sum(t[5] for t in pre)} prompt tokens ({sum(t[6] for t in pre)} with padding)")
    if mixed:  # trace: rows = decode rows, tokens = prompt tokens alongside them
        print(f"    decode steps with prefill folded in: {len(mixed)} forwards, {f['mixed_s']:.2f} s wall / "
              f"{f['mixed_cpu']:.2f} s CPU, {sum(t[5] for t in mixed)} prompt tokens alongside "
              f"{sum(t[4] for t in mixed)} decode rows")
    if dec:
        by_rows: dict[int, list[float]] = {}
        for t in dec:
            by_rows.setdefault(t[4], []).append(t[3])
        print(f"    decode: {len(dec)} steps, {f['decode_s']:.2f} s wall / {f['decode_cpu']:.2f} s CPU, mean rows "
              f"{f['row_steps'] / len(dec):.2f}; KV cells real/with padding "
              f"{sum(t[5] for t in dec)}/{sum(t[6] for t in dec)} "
              f"({100 * (1 - sum(t[5] for t in dec) / sum(t[6] for t in dec)):.0f} % padding)")
        print("    steps by rows (count, median CPU ms): " + ", ".join(
            f"{k}: {len(v)}, {1000 * statistics.median(v):.0f}" for k, v in sorted(by_rows.items())))
    return f


def bound(conc: dict, seq: dict) -> dict:
    """The most batching could give on this round, in engine CPU seconds measured in it.

    Prefills cost what they cost one after another (the sequential run's own). Decode goes
    in lockstep: every row from the first step, a step with k rows costing what the staggered
    run's k-row steps cost (their median; a line fitted to all steps where fewer than 3 had
    k rows). ``full``: every step with 8 rows, as sustained traffic could keep the batch (no
    ramp-up, no tail where the longest answer decodes alone)."""
    steps = [t for t in conc["trace"] if t[1] == "decode"]
    by_rows: dict[int, list[float]] = {}
    for t in steps:
        by_rows.setdefault(t[4], []).append(t[3])
    if len(by_rows) > 1:
        slope, intercept = statistics.linear_regression([t[4] for t in steps], [t[3] for t in steps])
    else:  # one row count only: no slope to fit
        slope, intercept = 0.0, statistics.mean(t[3] for t in steps)

    def step_cost(rows: int) -> float:
        seen = by_rows.get(rows, [])
        return statistics.median(seen) if len(seen) >= 3 else intercept + slope * rows

    prefill = sum(t[3] for t in seq["trace"] if t[1] == "prefill")
    sequential = prefill + sum(t[3] for t in seq["trace"] if t[1] == "decode")
    tokens = conc["tokens"]
    lockstep = sum(step_cost(sum(1 for n in tokens if n > step)) for step in range(max(tokens)))
    full = prefill + sum(tokens) * step_cost(8) / 8
    # Hardware where a step of any size costs what a one-row step of the sequential run does
    # (memory-bound at every batch size, as on a GPU): the most this workload allows at all,
    # given its prefills and its tail.
    one_alone = statistics.median(t[3] for t in seq["trace"] if t[1] == "decode")
    flat = prefill + max(tokens) * one_alone
    return {"sequential": sequential, "prefill": prefill, "lockstep": lockstep, "one": step_cost(1),
            "eight": step_cost(8), "bound": sequential / (prefill + lockstep), "full": sequential / full,
            "flat": sequential / flat}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stagger", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk-cost", type=int, default=0, metavar="TOKENS",
                        help="only measure prefilling a prompt of TOKENS in pieces of 512 ... 16 tokens (the cost "
                             "to its time to first token that chose the engine's prefill chunk)")
    parser.add_argument("--shape", choices=["realistic", "burst", "sampled"], default="realistic",
                        help="the workload: server_bench's realistic one, or traffic shape (a) or (f)")
    parser.add_argument("--packed", choices=["on", "off", "both"], default="both",
                        help="linear weights packed for batched decode (cpu_linear.py): on, off, or each in turn")
    parser.add_argument("--skip-padding", choices=["on", "off", "both"], default="on",
                        help="batched decode attention skips the KV padding (cpu_attention.py): on, off, or each in turn")
    parser.add_argument("--fold-cost", type=int, default=0, metavar="TOKENS",
                        help="only measure a piece of TOKENS and a decode step apart against folded (fold.py)")
    parser.add_argument("--fold", choices=["on", "off"], default="on",
                        help="prefill folded into the running rows' decode forward (fold.py), or always apart")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "aitk-bench-models")
    args = parser.parse_args()
    import torch

    from inference_server import cpu_attention, cpu_linear
    from inference_server.loading import load_model
    from inference_server.settings import ServerSettings

    torch.set_num_threads(args.threads)
    FOLD[0] = args.fold == "on"
    tiny = build_demo_model(args.cache / "tiny")
    model_dir = realistic_load.build_realistic(args.cache / "realistic", tiny.model_dir, server_bench.build_medium)
    loaded = load_model(ServerSettings(model_path=model_dir, no_adapter=True, threads=args.threads, api_key="x",
                                       device="cpu", cpu_packed="off"))

    def encode(text: str) -> list[int]:
        return loaded.encode_chat([{"role": "user", "content": text}])

    if args.chunk_cost:
        chunk_cost(loaded, args.chunk_cost)
        return 0
    if args.fold_cost:
        cpu_linear.pack_linears(loaded.model, args.packed if args.packed != "both" else "on")
        cpu_attention.use_for(loaded.model)
        fold_cost(loaded, args.fold_cost)
        return 0

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, torch threads {args.threads}, "
          f"load {os.getloadavg()[0]:.1f}")
    both = ["off", "on"]
    configs = [(p, k) for p in (both if args.packed == "both" else [args.packed])
               for k in (both if args.skip_padding == "both" else [args.skip_padding])]
    summary = []
    for packed, skip in configs:
        cpu_linear.unpack_linears(loaded.model)
        if packed == "on":
            print(cpu_linear.describe(cpu_linear.pack_linears(loaded.model, "on")))
        cpu_attention.stop_using(loaded.model)
        if skip == "on":
            cpu_attention.use_for(loaded.model)
        label = f"linear weights packed: {packed}; decode attention skips padding: {skip}"
        print(f"\n######## {label}")
        summary.append((label, run_rounds(args, loaded, encode)))
    if len(summary) > 1:
        (first_label, first), (last_label, last) = summary[0], summary[-1]
        print(f"\n[{last_label}] / [{first_label}], per round: throughput concurrent "
              + ", ".join(f"{b['conc_tps'] / a['conc_tps']:.2f}x" for a, b in zip(first, last, strict=True))
              + "; sequential " + ", ".join(f"{b['seq_tps'] / a['seq_tps']:.2f}x" for a, b in zip(first, last, strict=True)))
    return 0


def chunk_cost(loaded, length: int) -> None:
    """Prefill one prompt of ``length`` tokens whole, then in pieces of each size (each piece a
    forward on top of the cache the earlier ones left, as the engine does)."""
    import torch
    from transformers import DynamicCache

    ids = torch.randint(10, len(loaded.tokenizer) - 10, (1, length), generator=torch.Generator().manual_seed(0))

    def run(size: int) -> tuple[float, list[float]]:
        cache, pieces = DynamicCache(), []
        with torch.inference_mode():
            for start in range(0, length, size):
                end = min(length, start + size)
                t = time.perf_counter()
                loaded.model(input_ids=ids[:, start:end], attention_mask=torch.ones((1, end), dtype=torch.long),
                             position_ids=torch.arange(start, end).unsqueeze(0), past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
                pieces.append(time.perf_counter() - t)
        return sum(pieces), pieces

    run(64)  # warm up
    whole, _ = run(length)
    print(f"prefill of {length} tokens whole: {whole:.2f} s (load {os.getloadavg()[0]:.1f})")
    for size in (512, 256, 128, 64, 32, 16):
        if size < length:
            total, pieces = run(size)
            print(f"  pieces of {size:>3}: {total:.2f} s ({100 * (total / whole - 1):+.0f} %), one piece median "
                  f"{1000 * statistics.median(pieces):.0f} ms, worst {1000 * max(pieces):.0f} ms")


def fold_cost(loaded, piece: int, reps: int = 15) -> None:
    """A prefill piece and a decode step: two forwards (apart) against one (folded, fold.py),
    alternated in one process so both see the same machine; engine CPU time, median."""
    import torch
    from transformers import DynamicCache

    from inference_server import kvcache
    from inference_server.cpu_attention import FOLD_KWARG
    from inference_server.fold import FoldedStep, Segment

    gen = torch.Generator().manual_seed(0)
    vocab = len(loaded.tokenizer) - 10
    context, done, total = 200, 64, 400
    kw = loaded.cache_kwarg

    def filled(rows: int, n: int, capacity: int):
        cache = DynamicCache()
        loaded.model(input_ids=torch.randint(10, vocab, (rows, n), generator=gen), **{kw: cache}, use_cache=True,
                     logits_to_keep=1)
        return kvcache.to_slabs(cache, rows, capacity)

    def mark(*caches):
        return [(layer, layer.end) for c in caches for layer in c.layers]

    def rewind(marks):
        for layer, end in marks:
            layer.end = end
            layer._view()

    print(f"a {piece}-token piece of a {total}-token prompt ({done} done) and a decode step of k rows "
          f"({context} tokens of context each); CPU ms, median of {reps} (load {os.getloadavg()[0]:.1f})")
    with torch.inference_mode():
        for rows in (1, 2, 4, 8):
            batch, prompt = filled(rows, context, context + 8), filled(1, done, total)
            mask = torch.ones((rows, context + 1), dtype=torch.long)
            last = torch.randint(10, vocab, (rows, 1), generator=gen)
            piece_ids = torch.randint(10, vocab, (1, piece), generator=gen)
            apart, folded = [], []

            def run_apart():
                marks = mark(batch, prompt)
                loaded.model(input_ids=piece_ids, attention_mask=torch.ones((1, done + piece), dtype=torch.long),
                             position_ids=torch.arange(done, done + piece).unsqueeze(0), **{kw: prompt},
                             use_cache=True, logits_to_keep=torch.empty(0, dtype=torch.long))
                loaded.model(input_ids=last, attention_mask=mask, position_ids=torch.full((rows, 1), context),
                             **{kw: batch}, use_cache=True, logits_to_keep=1)
                rewind(marks)

            def run_folded():
                step = FoldedStep(batch, mask.bool()[:, None, None, :], [Segment(prompt, done, piece, total)])
                loaded.model(input_ids=torch.cat([last.view(1, rows), piece_ids], dim=1),
                             attention_mask=torch.ones((1, 1, 1, 1), dtype=torch.bool),
                             position_ids=torch.tensor([[context] * rows + list(range(done, done + piece))]),
                             **{kw: step, FOLD_KWARG: step}, use_cache=True, logits_to_keep=torch.arange(rows))
                step.rewind()

            for i in range(reps + 2):
                for fn, out in ((run_apart, apart), (run_folded, folded)):
                    t = time.thread_time()
                    fn()
                    if i >= 2:  # warm-up
                        out.append(time.thread_time() - t)
            a, f = statistics.median(apart), statistics.median(folded)
            print(f"  {rows} rows: apart {1000 * a:.0f} ms, folded {1000 * f:.0f} ms ({100 * (f / a - 1):+.0f} %)")


def run_rounds(args, loaded, encode) -> list[dict]:
    ratios, cpu_ratios, bounds, fulls, rounds = [], [], [], [], []
    for r in range(args.rounds):
        STAGGER[0] = args.stagger
        clients, sampling = shape_workload(args.shape, encode, 100 + r)
        seeds = [1000 * r + i for i in range(len(clients))]
        conc = asyncio.run(run_wave(loaded, clients, seeds, concurrent=True, sampling=sampling))
        seq = asyncio.run(run_wave(loaded, clients, seeds, concurrent=False, sampling=sampling))
        print(f"\n== round {r + 1} (load {os.getloadavg()[0]:.1f}): completion tokens {conc['tokens']} "
              f"(sequential: {seq['tokens']}); prompts {conc['prompt']}")
        fc = describe("8 staggered", conc)
        fs = describe("one after another", seq)
        ratio = (sum(conc["tokens"]) / conc["wall"]) / (sum(seq["tokens"]) / seq["wall"])
        cpu_ratio = ((fs["prefill_cpu"] + fs["decode_cpu"] + fs["mixed_cpu"])
                     / (fc["prefill_cpu"] + fc["decode_cpu"] + fc["mixed_cpu"]))
        print(f"  throughput concurrent / sequential: {ratio:.2f}x (wall); engine CPU sequential / "
              f"concurrent {cpu_ratio:.2f}x")
        b = bound(conc, seq)
        print(f"  step CPU: 1 row {1000 * b['one']:.0f} ms, 8 rows {1000 * b['eight']:.0f} ms; bound: "
              f"sequential {b['sequential']:.2f} s / (prefills {b['prefill']:.2f} s + lockstep decode "
              f"{b['lockstep']:.2f} s) = {b['bound']:.2f}x; every step with 8 rows (sustained traffic) {b['full']:.2f}x; "
              f"if a step of any size cost one row's {b['flat']:.2f}x")
        ratios.append(ratio)
        cpu_ratios.append(cpu_ratio)
        bounds.append(b["bound"])
        fulls.append(b["full"])
        rounds.append({"conc_tps": sum(conc["tokens"]) / conc["wall"], "seq_tps": sum(seq["tokens"]) / seq["wall"]})
    print(f"\nconcurrent/sequential: wall {', '.join(f'{x:.2f}x' for x in ratios)}; CPU "
          f"{', '.join(f'{x:.2f}x' for x in cpu_ratios)}; "
          f"bound {', '.join(f'{x:.2f}x' for x in bounds)}; full-batch bound {', '.join(f'{x:.2f}x' for x in fulls)}")
    print(f"engine CPU ratio / bound ({args.shape}): "
          + ", ".join(f"{100 * c / b:.0f} %" for c, b in zip(cpu_ratios, bounds, strict=True)) + " (goal >= 90 %)")
    return rounds


if __name__ == "__main__":
    sys.exit(main())
