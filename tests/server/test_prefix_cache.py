"""A chat's next turn is prefilled from the cache its previous turn left (issue 21, shape d):
the history is not computed again, and the text is the one a full prefill gives."""

from __future__ import annotations

import pytest
import torch

from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from tests.fixtures_model import make_settings


@pytest.fixture(scope="module", params=["merged", "unmerged"])
def loaded(request, tiny_model):
    torch.set_num_threads(1)
    return load_model(make_settings(tiny_model, merge=request.param == "merged"))


def greedy(max_tokens: int = 24) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


async def conversation(engine, loaded, turns: list[str], use_adapter=True) -> list[str]:
    messages, answers = [], []
    for text in turns:
        messages.append({"role": "user", "content": text})
        handle = engine.submit(loaded.encode_chat(messages), greedy(), use_adapter=use_adapter, timeout_s=60)
        answer, _ = await handle.result()
        answers.append(answer)
        messages.append({"role": "assistant", "content": answer})
    return answers


async def test_a_chats_next_turn_reuses_the_cache_of_the_last_one(loaded):
    turns = ["tell me about streaming tokens and " + "quota " * 12, "and what about adapters " + "merging " * 6,
             "one more question about the context"]
    cold = Engine(loaded, max_batch_size=8, prefill_chunk=8, prefix_cache_tokens=0)
    warm = Engine(loaded, max_batch_size=8, prefill_chunk=8)
    cold.start()
    warm.start()
    try:
        expected = await conversation(cold, loaded, turns)
        answers = await conversation(warm, loaded, turns)
        first_prompt = len(loaded.encode_chat([{"role": "user", "content": turns[0]}]))
        hits_before = warm.prefix_store.hits
        # The same first turn with the base model (unmerged): the adapter's cache is not used.
        other = await conversation(warm, loaded, turns[:1], use_adapter=False) if loaded.peft_adapters else None
        other_hits = warm.prefix_store.hits - hits_before
    finally:
        cold.stop()
        warm.stop()
    assert answers == expected
    assert all(expected)
    assert cold.prefix_store.hits == 0
    assert hits_before >= 2 * first_prompt  # turns 2 and 3 started at least past the first prompt
    if other is not None:
        assert other_hits == 0
    assert warm.prefix_store.tokens <= warm.prefix_store.max_tokens


def test_the_store_keeps_the_longest_history_within_its_budget():
    from inference_server.kvcache import PrefixStore

    def layers(n: int):
        return [(torch.arange(n, dtype=torch.float32).view(1, 1, n, 1),) * 2]

    store = PrefixStore(max_tokens=10)
    store.add(None, [1, 2, 3], layers(3))
    store.add(None, [1, 2, 3, 4, 5], layers(5))  # the turn after: the shorter entry goes
    assert store.tokens == 5
    n, found = store.match(None, [1, 2, 3, 4, 9, 9])
    assert n == 4 and found[0][0].shape[2] == 4
    assert store.match("adapter", [1, 2, 3, 4, 9])[0] == 0  # another adapter's cache is never used
    assert store.match(None, [1, 2, 3, 4, 5])[0] == 4  # the last token is always prefilled
    store.add("adapter", [7] * 6, layers(6))  # over the budget: the least recently used goes
    assert store.tokens == 6 and store.match(None, [1, 2, 3, 4, 5, 6])[0] == 0
    PrefixStore(max_tokens=0).add(None, [1], layers(1))  # 0: keeps nothing


async def test_a_next_turn_that_leaves_up_to_two_pieces_after_its_cached_history_is_prefilled_in_one(loaded):
    # A fresh prompt of up to two pieces is prefilled whole; a follow-up whose cached history
    # leaves that much went in two pieces (two passes over the weights, a decode step between).
    chunk = 8
    first = loaded.encode_chat([{"role": "user", "content": "tell me about streaming tokens and " + "quota " * 12}])
    follow_up = first + loaded.encode_chat([{"role": "user", "content": "and adapters, merging?"}])[:12]
    cold = Engine(loaded, max_batch_size=8, prefill_chunk=chunk, prefix_cache_tokens=0)
    warm = Engine(loaded, max_batch_size=8, prefill_chunk=chunk)
    prefills: list[int] = []
    # A prefill's prompt tokens (in a forward of its own, or folded into a decode step's: "mixed").
    warm.trace = lambda kind, wall, cpu, rows, tokens, padded: (prefills.append(tokens) if kind in ("prefill", "mixed")
                                                                else None)
    cold.start()
    warm.start()
    try:
        expected = [(await cold.submit(ids, greedy(), use_adapter=True, timeout_s=60).result())[0]
                    for ids in (first, follow_up)]
        answer = (await warm.submit(first, greedy(), use_adapter=True, timeout_s=60).result())[0]
        # Another chat decoding meanwhile (with none, pieces are larger anyway).
        running = warm.submit(loaded.encode_chat([{"role": "user", "content": "count to five"}]), greedy(400),
                              use_adapter=True, timeout_s=60)
        await running.next_output()
        before = len(prefills)
        again = (await warm.submit(follow_up, greedy(), use_adapter=True, timeout_s=60).result())[0]
        running.cancel()
        await running.result()
    finally:
        cold.stop()
        warm.stop()
    assert [answer, again] == expected
    assert warm.prefix_store.hits >= len(first)  # the follow-up started past the first prompt
    left = len(follow_up) - warm.prefix_store.hits
    assert chunk < left <= 2 * chunk, left
    assert prefills[before:] == [left]  # one forward (was two pieces)
