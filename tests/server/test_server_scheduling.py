"""The engine's scheduling: a short prompt's first token is not held behind a long prompt's
prefill (neither padded into the same prefill nor kept until the other prefills are done)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from tests.fixtures_model import make_settings


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_model(make_settings(tiny_model, merge=True))


def chat_ids(loaded, text: str) -> list[int]:
    return loaded.encode_chat([{"role": "user", "content": text}])


async def test_a_short_prompts_first_token_is_not_held_behind_a_long_prefill(loaded):
    engine = Engine(loaded, max_batch_size=8)
    engine.start()
    long_ids = chat_ids(loaded, "abc " * 100)
    short_seen = threading.Event()
    long_prefill_saw_short = []

    def hook(module, args):  # runs on the engine thread, before the long prompt's (first) prefill
        n = args[0].shape[1]
        if n > 1 and args[0][0].tolist() == long_ids[:n] and not long_prefill_saw_short:
            long_prefill_saw_short.append(short_seen.wait(timeout=10))

    handle = loaded.model.get_input_embeddings().register_forward_pre_hook(hook)
    try:
        with engine._cv:  # both wait together, so one iteration admits them both
            short = engine.submit(chat_ids(loaded, "hello"), SamplingParams(max_tokens=8, temperature=0),
                                  use_adapter=True, timeout_s=60)
            long = engine.submit(long_ids, SamplingParams(max_tokens=4, temperature=0),
                                 use_adapter=True, timeout_s=60)
        first, _ = await short.next_output()
        short_seen.set()
        await long.result()
        await short.result()
    finally:
        handle.remove()
        engine.stop()
    assert first  # the short reply's first text
    assert long_prefill_saw_short == [True], "the short reply waited for the long prompt's prefill"


def test_a_cpu_prefill_pads_a_prompt_only_where_that_is_cheaper_than_a_forward():
    # On one CPU thread 53 pad tokens (21 and 74 tokens together) cost about four times the
    # separate forward they would save; a few pad tokens cost less than it.
    from inference_server.prefill_plan import CPU_PREFILL_PADDING, prefill_chunks

    def chunks(*lengths: int, device: str = "cpu") -> list[list[int]]:
        return prefill_chunks(lengths, lambda n: n, max_tokens=4096, device_type=device)

    assert chunks(74, 21) == [[21], [74]]
    assert chunks(70, 74, 72) == [[70, 72, 74]]  # 6 pad tokens
    assert chunks(20, 20 + CPU_PREFILL_PADDING + 1) == [[20], [20 + CPU_PREFILL_PADDING + 1]]
    assert chunks(74, 21, device="cuda") == [[21, 74]]  # padding is nearly free on a GPU
    assert chunks(*[600] * 8) == [[600] * 6, [600] * 2]  # within the prefill token budget


def trace_of(engine) -> list[tuple[str, int]]:
    """(kind, rows) of every prefill forward and decode step, in order (``Engine.trace``)."""
    seen: list[tuple[str, int]] = []
    engine.trace = lambda kind, wall, cpu, rows, tokens, padded: seen.append((kind, rows))
    return seen


async def test_a_burst_that_reaches_an_idle_engine_over_a_few_ms_starts_in_one_prefill(loaded):
    # Over HTTP, 8 clients sending at once reach the engine 1-11 ms apart. Before, the first
    # woke the engine and went into a prefill and a decode step of its own while the other 7
    # waited, and they trickled in over more prefills (decode steps of 1, 2, 6, 7, 8 rows).
    engine = Engine(loaded, max_batch_size=8, gather_s=(1.0, 5.0))  # generous: a loaded machine
    seen = trace_of(engine)
    engine.start()
    prompt = chat_ids(loaded, "tell me about quotas")
    try:
        first = engine.submit(prompt, SamplingParams(max_tokens=4, temperature=0, ignore_eos=True),
                              use_adapter=True, timeout_s=60)
        await asyncio.sleep(0.02)
        others = [engine.submit(prompt, SamplingParams(max_tokens=4, temperature=0, ignore_eos=True),
                                use_adapter=True, timeout_s=60) for _ in range(7)]
        results = await asyncio.gather(*(h.result() for h in [first, *others]))
    finally:
        engine.stop()
    assert [done.completion_tokens for _, done in results] == [4] * 8
    assert len({text for text, _ in results}) == 1
    assert seen[0] == ("prefill", 8), seen[:4]
    assert [rows for kind, rows in seen if kind == "decode"] == [8, 8, 8]


async def test_arrivals_of_one_iteration_that_showed_text_wait_for_the_others_first_tokens(loaded):
    # Two prompts too different in length to be padded together go in two prefill forwards.
    # No row was decoding before them, and the first one's first token was text, so the second
    # prefill comes right after the first (before: a decode step of the first row in between).
    engine = Engine(loaded, max_batch_size=8)
    seen = trace_of(engine)
    engine.start()
    try:
        with engine._cv:  # both wait together, so one iteration admits them both
            handles = [engine.submit(chat_ids(loaded, text), SamplingParams(max_tokens=3, temperature=0,
                                                                            ignore_eos=True),
                                     use_adapter=True, timeout_s=60)
                       for text in ("hi", "tell me about quotas, adapters, tokens and deploying " * 2)]
        results = await asyncio.gather(*(h.result() for h in handles))
    finally:
        engine.stop()
    assert all(text for text, _ in results)  # the first tokens were text
    assert seen[:3] == [("prefill", 1), ("prefill", 1), ("decode", 2)], seen


async def test_a_first_token_goes_out_before_the_decode_step_that_follows_its_prefill(loaded):
    # While rows decode, a short arrival and a piece of a long one share an iteration: the short
    # prompt's prefill, a decode step of the running rows, the long prompt's piece. Its first
    # token waited for that decode step (one step of every running row) before it went out.
    engine = Engine(loaded, max_batch_size=8, prefill_chunk=8, prefix_cache_tokens=0)
    short_ids, long_ids = chat_ids(loaded, "hi"), chat_ids(loaded, "abc " * 40)
    assert len(short_ids) <= 16 < len(long_ids)  # whole, and in pieces
    seen: list[list] = []  # what was still held back at each forward after the short prefill

    def hook(module, args):  # on the engine thread, before every forward
        batch = args[0]
        # The short prompt alone, or after the running row's token (a folded step: fold.py).
        if seen or (batch.shape[0] == 1 and batch[0].tolist()[-len(short_ids):] == short_ids):
            seen.append([h for h, _ in engine._outbox])

    hooked = loaded.model.get_input_embeddings().register_forward_pre_hook(hook)
    engine.start()
    try:
        running = engine.submit(chat_ids(loaded, "count to five"), SamplingParams(max_tokens=400, temperature=0,
                                ignore_eos=True), use_adapter=True, timeout_s=60)
        await running.next_output()
        with engine._cv:  # both wait together, so one iteration admits them both
            short = engine.submit(short_ids, SamplingParams(max_tokens=4, temperature=0, ignore_eos=True),
                                  use_adapter=True, timeout_s=60)
            long = engine.submit(long_ids, SamplingParams(max_tokens=2, temperature=0, ignore_eos=True),
                                 use_adapter=True, timeout_s=60)
        await asyncio.gather(short.result(), long.result())
        running.cancel()
        await running.result()
    finally:
        hooked.remove()
        engine.stop()
    assert len(seen) >= 2
    assert short not in seen[1], "the short reply's first token was held through the next decode step"
