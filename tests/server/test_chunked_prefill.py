"""Chunked prefill (issue 21): a prompt longer than the engine's ``prefill_chunk`` is prefilled
in pieces, with decode steps of the running rows in between, and makes the same text as a
prompt prefilled in one forward, merged or unmerged, alone or in a mixed-adapter batch.

Every forward is seen through a hook on the input embeddings (no timing): a prefill piece is
one row of several tokens, a decode step one token per row.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch

from inference_server.engine import ALONE_FACTOR, WHOLE_FACTOR, Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from tests.fixtures_model import make_settings

CHUNK = 8
SUBJECTS = ["adapters", "quota", "tokens", "deploying", "streaming", "temperature"]


@pytest.fixture(scope="module", params=["merged", "unmerged"])
def loaded(request, tiny_model):
    torch.set_num_threads(1)
    return load_model(make_settings(tiny_model, merge=request.param == "merged"))


@pytest.fixture(scope="module")
def unmerged(tiny_model):
    torch.set_num_threads(1)
    return load_model(make_settings(tiny_model, merge=False))


def ids(loaded, text: str) -> list[int]:
    return loaded.encode_chat([{"role": "user", "content": text}])


def greedy(max_tokens: int = 40) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


def adapter_of(loaded, i: int):
    return i % 2 == 0 if loaded.peft_adapters else True  # unmerged: the adapter and the base, mixed


class Forwards:
    """Every forward's input ids (on the engine thread), in order."""

    def __init__(self, loaded):
        self.seen: list[list[list[int]]] = []
        self.hook = loaded.model.get_input_embeddings().register_forward_pre_hook(
            lambda module, args: self.seen.append(args[0].tolist()))

    def pieces_of(self, prompt: list[int]) -> list[int]:
        """Indexes of the forwards that prefilled ``prompt``'s consecutive pieces (one row each)."""
        found, done = [], 0
        for i, batch in enumerate(self.seen):
            if len(batch) == 1 and len(batch[0]) > 1 and batch[0] == prompt[done:done + len(batch[0])]:
                found.append(i)
                done += len(batch[0])
        assert done == len(prompt), "the prompt was not prefilled piece by piece"
        return found


async def run_all(engine, loaded, prompts: list[str], params: SamplingParams) -> list[str]:
    with engine._cv:  # all wait together, so one iteration admits them all
        handles = [engine.submit(ids(loaded, p), params, use_adapter=adapter_of(loaded, i), timeout_s=60)
                   for i, p in enumerate(prompts)]
    return [text for text, _ in await asyncio.gather(*(h.result() for h in handles))]


async def test_a_chunked_prefill_gives_the_same_greedy_text_as_an_unchunked_one(loaded):
    prompts = [f"prompt number {i} " + f"{SUBJECTS[i]} " * (i * 30 + 3) for i in range(len(SUBJECTS))]
    lengths = [len(ids(loaded, p)) for p in prompts]
    # Pieces even with no row decoding (over two lone pieces), and prompts prefilled whole too.
    assert max(lengths) > CHUNK * ALONE_FACTOR * WHOLE_FACTOR and min(lengths) < CHUNK * 4
    whole = Engine(loaded, max_batch_size=8, prefill_chunk=4096, prefix_cache_tokens=0)
    chunked = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0)
    traced: list[tuple] = []
    chunked.trace = lambda *a: traced.append(a)
    whole.start()
    chunked.start()
    try:
        # Long enough that the short prompts' rows still decode when the long ones join.
        expected = [(await run_all(whole, loaded, [p], greedy(120)))[0] for p in prompts]
        alone = [(await run_all(chunked, loaded, [p], greedy(120)))[0] for p in prompts]
        # All at once: pieces of the long ones between decode steps of the rows already in,
        # rows of the adapter and of the base in one batch where the adapter is unmerged.
        chunked.peak_batch = 0
        together = await run_all(chunked, loaded, prompts, greedy(120))
    finally:
        whole.stop()
        chunked.stop()
    assert len(set(expected)) == len(prompts), "each prompt should produce its own text"
    assert alone == expected
    assert together == expected
    assert chunked.peak_batch >= 4, "the rows were not decoded together"
    prefills = [t for t in traced if t[0] == "prefill"]
    mixed = [t for t in traced if t[0] == "mixed"]  # folded into a decode step's forward (prompt tokens: t[4])
    # No prompt took more in one forward than a prompt prefilled whole may (two lone pieces).
    assert all(t[5] // t[3] <= CHUNK * ALONE_FACTOR * WHOLE_FACTOR for t in prefills)
    # The long prompts went in pieces.
    assert sum(1 for t in prefills if t[3] == 1) + len(mixed) > len(prompts) * 3


async def test_a_long_prompt_is_prefilled_between_decode_steps_of_the_running_rows(unmerged):
    loaded = unmerged
    chunk = 2 * CHUNK  # the short prompt fits in one piece
    engine = Engine(loaded, max_batch_size=8, prefill_chunk=chunk, prefix_cache_tokens=0)
    long_ids = ids(loaded, "tell me everything about " + "streaming tokens " * 40)
    short_ids = ids(loaded, "quota?")
    assert 1 < len(short_ids) <= chunk and len(long_ids) > 6 * chunk
    first_piece_seen, short_submitted = threading.Event(), threading.Event()
    forwards = Forwards(loaded)

    def hold_first_piece(module, args):  # the short request arrives while the long one is under way
        batch = args[0]
        if batch.shape[0] == 1 and batch.shape[1] > 1 and batch[0].tolist() == long_ids[:batch.shape[1]]:
            first_piece_seen.set()
            short_submitted.wait(timeout=10)

    hold = loaded.model.get_input_embeddings().register_forward_pre_hook(hold_first_piece)
    engine.start()
    try:
        running = [engine.submit(ids(loaded, p), greedy(400), use_adapter=i % 2 == 0, timeout_s=120)
                   for i, p in enumerate(["count to five", "what is your name?"])]
        while engine.active < 2 or len(forwards.seen) < 4:  # both decoding before the long prompt comes
            await asyncio.sleep(0.005)
        long = engine.submit(long_ids, greedy(4), use_adapter=True, timeout_s=120)
        while not first_piece_seen.is_set():
            await asyncio.sleep(0.005)
        short = engine.submit(short_ids, greedy(4), use_adapter=False, timeout_s=120)
        short_submitted.set()
        await asyncio.gather(long.result(), short.result())
        for handle in running:
            handle.cancel()
        await asyncio.gather(*(h.result() for h in running))
    finally:
        hold.remove()
        forwards.hook.remove()
        engine.stop()

    seen = forwards.seen
    pieces = forwards.pieces_of(long_ids)
    assert len(pieces) >= len(long_ids) // chunk
    assert all(len(seen[i][0]) <= chunk for i in pieces)
    # Between every two pieces the running rows took a decode step (one token per row, two rows at least).
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert any(len(batch) >= 2 and all(len(row) == 1 for row in batch) for batch in seen[a + 1:b]), (a, b)
    # The short request, sent after the long one's first piece, was prefilled and decoding
    # long before the long prompt's last piece.
    short_prefill = next(i for i, batch in enumerate(seen) if [short_ids] == batch)
    assert pieces[0] < short_prefill < pieces[2]
    three_rows = next(i for i, batch in enumerate(seen) if i > short_prefill and len(batch) >= 3)
    assert three_rows < pieces[-1]


def poisoned_prompt(loaded, prompts: list[str]) -> tuple[list[int], Any]:
    """A long prompt, and an input-embedding pre-hook that raises in any forward carrying one of
    its later pieces (a folded forward or the piece's own alike): its first piece goes through."""
    poisoned_ids = ids(loaded, "tell me everything about " + "poison " * 30)
    marker = next(t for t in poisoned_ids[3 * CHUNK:] if all(t not in ids(loaded, p) for p in prompts))
    assert marker not in poisoned_ids[:CHUNK]

    def hook(module, args):
        batch = args[0]
        if batch.shape[1] > 1 and bool((batch == marker).any()):
            raise RuntimeError("injected prefill failure")

    return poisoned_ids, hook


async def test_a_piece_that_raises_fails_only_its_request(unmerged):
    loaded = unmerged
    engine = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0)
    prompts = ["hello", "count to five"]
    poisoned_ids, hook = poisoned_prompt(loaded, prompts)

    engine.start()
    try:
        expected = await run_all(engine, loaded, prompts, greedy())
        handle = loaded.model.get_input_embeddings().register_forward_pre_hook(hook)
        try:
            running = [engine.submit(ids(loaded, p), greedy(), use_adapter=adapter_of(loaded, i), timeout_s=60)
                       for i, p in enumerate(prompts)]
            poisoned = engine.submit(poisoned_ids, greedy(), use_adapter=True, timeout_s=60)
            (_, poisoned_done), *results = await asyncio.gather(poisoned.result(), *(h.result() for h in running))
        finally:
            handle.remove()
        again = await run_all(engine, loaded, prompts, greedy())
    finally:
        engine.stop()
    assert poisoned_done.reason == "error" and "RuntimeError" in poisoned_done.error
    assert poisoned_done.completion_tokens == 0
    assert [text for text, _ in results] == expected
    assert again == expected
    assert engine.active == 0


# ------------------------------------------------------------------ folded steps (fold.py)
async def run_one_adapter(engine, loaded, prompts: list[str], params: SamplingParams) -> list[str]:
    """Every row on the adapter (merged: the weights as loaded), so steps can fold."""
    with engine._cv:
        handles = [engine.submit(ids(loaded, p), params, use_adapter=True, timeout_s=60) for p in prompts]
    return [text for text, _ in await asyncio.gather(*(h.result() for h in handles))]


async def test_a_folded_step_gives_the_same_greedy_text_as_unchunked_and_separate_pieces(loaded):
    prompts = [f"prompt number {i} " + f"{SUBJECTS[i]} " * (i * 30 + 3) for i in range(len(SUBJECTS))]
    engines = {
        "whole": Engine(loaded, max_batch_size=8, prefill_chunk=4096, prefix_cache_tokens=0, fold=False),
        "pieces": Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0, fold=False),
        "folded": Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0),
    }
    assert engines["folded"].fold and not engines["pieces"].fold
    traced: dict[str, list[tuple]] = {name: [] for name in engines}
    for name, engine in engines.items():
        engine.trace = lambda *a, name=name: traced[name].append(a)
        engine.start()
    try:
        texts = {name: await run_one_adapter(engine, loaded, prompts, greedy(120)) for name, engine in engines.items()}
    finally:
        for engine in engines.values():
            engine.stop()
    assert len(set(texts["whole"])) == len(prompts), "each prompt should produce its own text"
    assert texts["pieces"] == texts["whole"]
    assert texts["folded"] == texts["whole"]
    mixed = [t for t in traced["folded"] if t[0] == "mixed"]
    assert not any(t[0] == "mixed" for t in traced["pieces"])
    # Pieces of the long prompts went in decode steps' forwards: rows decoding, prompt tokens alongside.
    assert len(mixed) > len(prompts) and all(t[3] >= 1 and t[4] >= 1 and t[5] == t[3] + t[4] for t in mixed)
    separate = sum(1 for t in traced["pieces"] if t[0] in ("prefill", "decode"))
    folded = sum(1 for t in traced["folded"] if t[0] in ("prefill", "decode", "mixed"))
    assert folded < separate - len(prompts), "folding saved no forwards"


async def run_behind(engine, loaded, prompts: list[str], params: SamplingParams) -> list[str]:
    """All but the last prompt first; the last once they decode (so it goes in pieces, folded)."""
    engine.peak_batch = 0
    first = [engine.submit(ids(loaded, p), params, use_adapter=True, timeout_s=60) for p in prompts[:-1]]
    while engine.peak_batch < len(first):
        await asyncio.sleep(0.002)
    last = engine.submit(ids(loaded, prompts[-1]), params, use_adapter=True, timeout_s=60)
    return [text for text, _ in await asyncio.gather(*(h.result() for h in [*first, last]))]


def decoder_layers(loaded):
    model = loaded.model
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    return core.model.layers


async def test_a_long_prompts_pieces_ride_in_the_running_rows_decode_forwards(unmerged):
    loaded = unmerged
    engine = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0)
    traced: list[tuple] = []
    engine.trace = lambda *a: traced.append(a)
    long_ids = ids(loaded, "tell me everything about " + "streaming tokens " * 30)
    forwards = Forwards(loaded)
    engine.start()
    try:
        running = [engine.submit(ids(loaded, p), greedy(400), use_adapter=True, timeout_s=120)
                   for p in ["count to five", "what is your name?"]]
        while engine.active < 2 or len(forwards.seen) < 4:  # both decoding before the long prompt comes
            await asyncio.sleep(0.005)
        long = engine.submit(long_ids, greedy(4), use_adapter=True, timeout_s=120)
        (_, done), = await asyncio.gather(long.result())
        for handle in running:
            handle.cancel()
        await asyncio.gather(*(h.result() for h in running))
    finally:
        forwards.hook.remove()
        engine.stop()
    assert done.reason == "length" and done.completion_tokens == 4
    # Every piece went in one forward with the two running rows' tokens first: [1, 2 + piece].
    folded = [batch[0] for batch in forwards.seen if len(batch) == 1 and len(batch[0]) > 2
              and any(batch[0][2:] == long_ids[i:i + len(batch[0]) - 2] for i in range(0, len(long_ids), CHUNK))]
    assert sum(len(f) - 2 for f in folded) == len(long_ids)
    assert all(len(f) - 2 <= CHUNK for f in folded)
    mixed = [t for t in traced if t[0] == "mixed"]
    assert [(t[3], t[4]) for t in mixed] == [(2, len(f) - 2) for f in folded]  # decode rows, prompt tokens
    assert not any(t[0] == "prefill" for t in traced[traced.index(mixed[0]):traced.index(mixed[-1])])


async def test_a_folded_forward_that_raises_is_run_apart_and_everyone_gets_the_same_text(loaded):
    # It raises halfway through the layers (some caches already hold its keys): the iteration
    # goes the separate way from the caches as they were, and every text is the one it would be.
    engine = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0)
    traced: list[tuple] = []
    engine.trace = lambda *a: traced.append(a)
    prompts = ["hello", "count to five", "tell me everything about " + "adapters " * 30]
    raised: list[int] = []

    def hook(module, args, kwargs):
        if "aitk_fold" in kwargs and len(raised) < 2:
            raised.append(args[0].shape[1])
            raise RuntimeError("injected failure of a folded forward")

    engine.start()
    try:
        expected = await run_behind(engine, loaded, prompts, greedy(60))
        assert any(t[0] == "mixed" for t in traced)
        layers = decoder_layers(loaded)
        handle = layers[len(layers) // 2].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            traced.clear()
            again = await run_behind(engine, loaded, prompts, greedy(60))
        finally:
            handle.remove()
    finally:
        engine.stop()
    assert len(raised) == 2
    assert again == expected
    assert any(t[0] == "mixed" for t in traced)  # folding went on after the failures
    assert engine.active == 0


async def test_a_folded_piece_that_raises_fails_only_its_request(loaded):
    engine = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0)
    traced: list[tuple] = []
    engine.trace = lambda *a: traced.append(a)
    prompts = ["hello", "count to five"]
    poisoned_ids, hook = poisoned_prompt(loaded, prompts)

    engine.start()
    try:
        expected = await run_one_adapter(engine, loaded, prompts, greedy())
        handle = loaded.model.get_input_embeddings().register_forward_pre_hook(hook)
        try:
            engine.peak_batch = 0
            running = [engine.submit(ids(loaded, p), greedy(), use_adapter=True, timeout_s=60) for p in prompts]
            while engine.peak_batch < len(running):  # decoding, so the poisoned prompt goes in folded pieces
                await asyncio.sleep(0.002)
            poisoned = engine.submit(poisoned_ids, greedy(), use_adapter=True, timeout_s=60)
            (_, poisoned_done), *results = await asyncio.gather(poisoned.result(), *(h.result() for h in running))
        finally:
            handle.remove()
        again = await run_one_adapter(engine, loaded, prompts, greedy())
    finally:
        engine.stop()
    assert any(t[0] == "mixed" for t in traced), "no piece was folded"
    assert poisoned_done.reason == "error" and "RuntimeError" in poisoned_done.error
    assert poisoned_done.completion_tokens == 0
    assert [text for text, _ in results] == expected
    assert again == expected
    assert engine.active == 0


async def test_rows_on_other_adapters_keep_prefill_apart_and_give_the_same_text(unmerged):
    # peft picks adapters per batch row, and a folded forward is one row: with the base and the
    # adapter mixed, pieces go in forwards of their own; on one adapter they fold.
    loaded = unmerged
    prompts = [f"prompt number {i} " + f"{SUBJECTS[i]} " * (i * 30 + 3) for i in range(4)]
    whole = Engine(loaded, max_batch_size=8, prefill_chunk=4096, prefix_cache_tokens=0)
    chunked = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0)
    traced: list[tuple] = []
    chunked.trace = lambda *a: traced.append(a)
    whole.start()
    chunked.start()
    try:
        expected = await run_all(whole, loaded, prompts, greedy(120))
        mixed_adapters = await run_all(chunked, loaded, prompts, greedy(120))
        kinds_mixed = {t[0] for t in traced}
        traced.clear()
        await run_one_adapter(chunked, loaded, prompts, greedy(120))
        kinds_one = {t[0] for t in traced}
    finally:
        whole.stop()
        chunked.stop()
    assert mixed_adapters == expected
    assert "mixed" not in kinds_mixed and "prefill" in kinds_mixed
    assert "mixed" in kinds_one


async def test_short_prompts_arriving_together_fold_into_one_decode_forward_as_segments(loaded):
    # Several whole prompts in one folded forward: each attends only to itself (its own cache).
    running_prompt = "count to five"
    arrivals = ["hello there", "what is a quota?", "tell me about tokens"]
    texts = {}
    for fold in (False, True):
        engine = Engine(loaded, max_batch_size=8, prefill_chunk=CHUNK, prefix_cache_tokens=0, fold=fold)
        traced: list[tuple] = []
        engine.trace = lambda *a, traced=traced: traced.append(a)
        engine.start()
        try:
            engine.peak_batch = 0
            running = engine.submit(ids(loaded, running_prompt), greedy(60), use_adapter=True, timeout_s=60)
            while engine.peak_batch < 1:
                await asyncio.sleep(0.002)
            with engine._cv:  # one iteration admits them all
                handles = [engine.submit(ids(loaded, p), greedy(30), use_adapter=True, timeout_s=60) for p in arrivals]
            texts[fold] = [t for t, _ in await asyncio.gather(running.result(), *(h.result() for h in handles))]
        finally:
            engine.stop()
    assert texts[True] == texts[False]
    lengths = sorted(len(ids(loaded, p)) for p in arrivals)
    # The three went in one forward beside the running row (prompt tokens: all of theirs).
    assert any(t[0] == "mixed" and t[3] == 1 and t[4] == sum(lengths) for t in traced), traced[:6]


@pytest.fixture(scope="module")
def random_model():
    """A small Phi-3 with random weights and grouped-query attention: every token's keys
    matter to every later one (the demo model's hand-set weights hide attention errors)."""
    from transformers import Phi3Config, Phi3ForCausalLM

    from inference_server import cpu_attention

    torch.manual_seed(0)
    model = Phi3ForCausalLM(Phi3Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                       original_max_position_embeddings=256, pad_token_id=0,
                                       attn_implementation="sdpa")).eval()
    assert cpu_attention.use_for(model)
    return model


def test_a_folded_forward_gives_the_logits_and_caches_of_separate_forwards(random_model):
    # Left-padded decode rows, a piece going on from its cache (explicit causal mask) and a
    # whole prompt (SDPA's is_causal), on random tokens: every logit and every cached key and
    # value as the separate forwards give them.
    import copy

    from transformers import DynamicCache

    from inference_server import kvcache
    from inference_server.cpu_attention import FOLD_KWARG
    from inference_server.fold import FoldedStep, Segment

    model, kw = random_model, "cache"
    gen = torch.Generator().manual_seed(3)
    tokens = lambda *shape: torch.randint(1, 128, shape, generator=gen)  # noqa: E731
    lengths = [9, 14, 5]
    width = max(lengths)
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
    with torch.inference_mode():
        batch = DynamicCache()
        model(input_ids=tokens(3, width), attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
              use_cache=True, **{kw: batch})
        batch = kvcache.to_slabs(batch, 8)
        prompt_a = tokens(1, 18)
        piece_cache = DynamicCache()
        model(input_ids=prompt_a[:, :10], use_cache=True, **{kw: piece_cache})
        piece_cache = kvcache.to_slabs(piece_cache, 1, 18)
        prompt_b = tokens(1, 7)
        last = tokens(3, 1)
        step_mask = torch.cat([mask, torch.ones((3, 1), dtype=torch.long)], dim=1)
        positions = torch.tensor(lengths).unsqueeze(1)

        ref_batch, ref_piece, ref_whole = copy.deepcopy(batch), copy.deepcopy(piece_cache), DynamicCache()
        ref_rows = model(input_ids=last, attention_mask=step_mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{kw: ref_batch}).logits[:, -1]
        ref_a = model(input_ids=prompt_a[:, 10:], attention_mask=torch.ones((1, 18), dtype=torch.long),
                      position_ids=torch.arange(10, 18).unsqueeze(0), use_cache=True, logits_to_keep=1,
                      **{kw: ref_piece}).logits[:, -1]
        ref_b = model(input_ids=prompt_b, use_cache=True, logits_to_keep=1, **{kw: ref_whole}).logits[:, -1]

        segments = [Segment(piece_cache, 10, 8, 18), Segment(None, 0, 7, 7)]
        step = FoldedStep(batch, step_mask.bool()[:, None, None, :], segments)
        out = model(input_ids=torch.cat([last.view(1, 3), prompt_a[:, 10:], prompt_b], dim=1),
                    attention_mask=torch.ones((1, 1, 1, 1), dtype=torch.bool),
                    position_ids=torch.tensor([lengths + list(range(10, 18)) + list(range(7))]),
                    use_cache=True, logits_to_keep=torch.tensor([0, 1, 2, 3 + 8 - 1, 3 + 8 + 7 - 1]),
                    **{kw: step, FOLD_KWARG: step}).logits[0]
    close = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[:3], ref_rows, **close)
    torch.testing.assert_close(out[3:4], ref_a, **close)
    torch.testing.assert_close(out[4:5], ref_b, **close)
    whole = step.segment_cache(segments[1])
    for ours, ref in [(batch, ref_batch), (step.segment_cache(segments[0]), ref_piece), (whole, ref_whole)]:
        for a, b in zip(ours.layers, ref.layers, strict=True):
            real = slice(None) if ours is not batch else step_mask.bool()  # padding cells hold anything
            torch.testing.assert_close(a.keys.transpose(1, 2)[real], b.keys.transpose(1, 2)[real], **close)
            torch.testing.assert_close(a.values.transpose(1, 2)[real], b.values.transpose(1, 2)[real], **close)
