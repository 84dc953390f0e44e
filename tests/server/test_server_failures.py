"""A request can only fail itself (issue 9, section 1): a batched step that raises because
of one row fails that row, and every other row ends with the text it would have made alone.

Failures are injected where a real one would come from: torch's sampler for one request's
generator, and a decoder layer (after earlier layers already wrote this step into the
cache) for the row at a position no other row reaches.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from tests.fixtures_model import make_settings

POISON_SEED = 4242
POISON_POSITION = 120  # only the long prompt's row gets here; the others stay below
PROMPTS = ["hello", "tell me a story", "count to five"]


@pytest.fixture(scope="module")
def loaded(tiny_model):
    torch.set_num_threads(1)
    return load_model(make_settings(tiny_model, merge=False))


@pytest.fixture
async def engine(loaded):
    eng = Engine(loaded, max_batch_size=8, max_queue=16)
    eng.start()
    yield eng
    eng.stop()


def ids(loaded, text: str) -> list[int]:
    return loaded.encode_chat([{"role": "user", "content": text}])


def greedy(max_tokens: int = 40) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)


async def run(engine, loaded, text: str, params: SamplingParams, use_adapter: bool = True):
    return await engine.submit(ids(loaded, text), params, use_adapter=use_adapter, timeout_s=60).result()


async def alone(engine, loaded, params: SamplingParams) -> list[str]:
    return [(await run(engine, loaded, p, params, use_adapter=i % 2 == 0))[0] for i, p in enumerate(PROMPTS)]


def others(engine, loaded, params: SamplingParams) -> list[asyncio.Future]:
    return [asyncio.ensure_future(run(engine, loaded, p, params, use_adapter=i % 2 == 0))
            for i, p in enumerate(PROMPTS)]


def last_decoder_layer(loaded):
    return [m for m in loaded.model.modules() if type(m).__name__.endswith("DecoderLayer")][-1]


def fail_layer_at(loaded, *, decode: bool):
    """Make the last decoder layer raise for any batch holding a row at POISON_POSITION or
    beyond, in decode steps (one new token per row) or in prefills."""

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        positions = kwargs.get("position_ids")
        if positions is not None and (hidden.shape[1] == 1) == decode and int(positions.max()) >= POISON_POSITION:
            raise RuntimeError("injected failure for the row at a poisoned position")

    return last_decoder_layer(loaded).register_forward_pre_hook(hook, with_kwargs=True)


def poisoned_prompt(loaded) -> str:
    text = "poison " * 30
    assert POISON_POSITION < len(ids(loaded, text)) < loaded.context_len - 100
    assert all(len(ids(loaded, p)) + 40 < POISON_POSITION for p in PROMPTS)
    return text


async def wait_for(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_a_row_whose_sampling_raises_mid_decode_fails_alone(engine, loaded, monkeypatch):
    expected = await alone(engine, loaded, greedy())
    seeded = SamplingParams(max_tokens=40, temperature=1.0, top_p=0.9, seed=7, ignore_eos=True)
    seeded_alone, _ = await run(engine, loaded, "what is your name?", seeded)

    real_rand = torch.rand
    poisoned_draws = []

    def rand(*args, generator=None, **kwargs):  # each sampled row's draw comes from its own generator
        if generator is not None and generator.initial_seed() == POISON_SEED:
            poisoned_draws.append(1)
            if len(poisoned_draws) > 3:  # a few tokens in, inside the decode loop
                raise RuntimeError("injected sampling failure")
        return real_rand(*args, generator=generator, **kwargs)

    monkeypatch.setattr(torch, "rand", rand)
    engine.peak_batch = 0
    poisoned = SamplingParams(max_tokens=40, temperature=1.0, seed=POISON_SEED, ignore_eos=True)
    *together, seeded_result, (_, poisoned_done) = await asyncio.gather(
        *others(engine, loaded, greedy()), run(engine, loaded, "what is your name?", seeded),
        run(engine, loaded, "hello", poisoned))

    assert engine.peak_batch >= 5, "the rows were not decoded together"
    assert [text for text, _ in together] == expected
    assert all(done.reason == "length" and done.completion_tokens == 40 for _, done in together)
    assert poisoned_done.reason == "error" and poisoned_done.completion_tokens == 3
    assert "RuntimeError" in poisoned_done.error and "injected" not in poisoned_done.error  # no exception text
    assert seeded_result[0] == seeded_alone  # a sampled neighbour draws the same tokens too
    assert engine.active == 0


async def test_a_decode_step_that_raises_for_one_row_is_retried_row_by_row(engine, loaded):
    expected = await alone(engine, loaded, greedy())
    poison = poisoned_prompt(loaded)
    hook = fail_layer_at(loaded, decode=True)
    try:
        running = others(engine, loaded, greedy())
        await wait_for(lambda: engine.active == len(PROMPTS))  # decoding before the poisoned row arrives
        _, poisoned_done = await run(engine, loaded, poison, greedy())
        together = await asyncio.gather(*running)
        # Still serving afterwards, batched, with the cache rebuilt from the per-row retry.
        again = await asyncio.gather(*others(engine, loaded, greedy()))
    finally:
        hook.remove()
    assert poisoned_done.reason == "error" and poisoned_done.completion_tokens == 1  # its prefill token only
    assert [text for text, _ in together] == expected
    assert [text for text, _ in again] == expected
    assert engine.active == 0


def fail_prefill_holding(loaded, token: int):
    """Make any prefill whose input holds ``token`` raise (in the embedding, first thing)."""

    def hook(module, args):
        input_ids = args[0]
        if input_ids.shape[1] > 1 and bool((input_ids == token).any()):
            raise RuntimeError("injected prefill failure")

    return loaded.model.get_input_embeddings().register_forward_pre_hook(hook)


async def test_a_newcomer_whose_prefill_raises_fails_alone(engine, loaded):
    expected = await alone(engine, loaded, greedy())
    # Short, like the newcomer (11 tokens and 1): little enough padding for one prefill batch.
    poison = "poison"
    marker = next(t for t in ids(loaded, poison) if all(t not in ids(loaded, p) for p in PROMPTS))
    hook = fail_prefill_holding(loaded, marker)
    try:
        running = [asyncio.ensure_future(run(engine, loaded, p, greedy(), use_adapter=i % 2 == 0))
                   for i, p in enumerate(PROMPTS[:2])]
        await wait_for(lambda: engine.active == 2)  # two streams decoding when the newcomers come
        engine.peak_prefill = 0
        # Submitted under the engine's lock so both wait together and are prefilled in one batch.
        with engine._cv:
            poisoned = engine.submit(ids(loaded, poison), greedy(), use_adapter=True, timeout_s=60)
            newcomer = engine.submit(ids(loaded, PROMPTS[2]), greedy(), use_adapter=True, timeout_s=60)
        (_, poisoned_done), (newcomer_text, _), *earlier = await asyncio.gather(
            poisoned.result(), newcomer.result(), *running)
    finally:
        hook.remove()
    assert engine.peak_prefill == 2, "the newcomers were not prefilled together"
    assert poisoned_done.reason == "error" and poisoned_done.completion_tokens == 0
    assert [text for text, _ in earlier] == expected[:2]
    assert newcomer_text == expected[2]
    assert engine.active == 0


async def test_a_seed_torch_cannot_take_fails_only_its_request(engine, loaded):
    expected = await alone(engine, loaded, greedy())
    bad_seed = SamplingParams(max_tokens=8, temperature=1.0, seed=2**64, ignore_eos=True)
    with engine._cv:  # arrives with the others: one prefill batch
        bad = engine.submit(ids(loaded, "hello"), bad_seed, use_adapter=True, timeout_s=60)
        running = [engine.submit(ids(loaded, p), greedy(), use_adapter=i % 2 == 0, timeout_s=60)
                   for i, p in enumerate(PROMPTS)]
    together = await asyncio.gather(*(handle.result() for handle in running))
    _, bad_done = await bad.result()
    assert bad_done.reason == "error" and "ValueError" in bad_done.error
    assert [text for text, _ in together] == expected
