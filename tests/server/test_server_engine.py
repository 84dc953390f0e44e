"""The generation engine on the real tiny model, without HTTP: adapter, batching, stops,
cancellation, timeouts and the queue bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from inference_server.demo_model import CHAT_TEMPLATE, DEMO_REPLIES
from inference_server.engine import Engine
from inference_server.handles import QueueFull, SamplingParams
from inference_server.loading import load_model
from inference_server.textstream import StopMatcher
from tests.fixtures_model import make_settings


@pytest.fixture(scope="module")
def unmerged(tiny_model):
    return load_model(make_settings(tiny_model, merge=False))


def chat_ids(loaded, text: str) -> list[int]:
    return loaded.encode_chat([{"role": "user", "content": text}])


def greedy(max_tokens: int = 40, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **kw)


async def generate(engine, loaded, text, params, use_adapter=True, timeout_s=30.0):
    handle = engine.submit(chat_ids(loaded, text), params, use_adapter=use_adapter, timeout_s=timeout_s)
    return await handle.result()


@pytest.fixture
async def engine(unmerged):
    eng = Engine(unmerged, max_batch_size=8, max_queue=16)
    eng.start()
    yield eng
    eng.stop()


async def test_adapter_and_base_give_their_own_taught_replies(engine, unmerged):
    for prompt, (base_reply, adapter_reply) in DEMO_REPLIES.items():
        text, done = await generate(engine, unmerged, prompt, greedy(), use_adapter=True)
        assert (text, done.reason) == (adapter_reply, "stop")
        text, done = await generate(engine, unmerged, prompt, greedy(), use_adapter=False)
        assert (text, done.reason) == (base_reply, "stop")


async def test_merged_adapter_answers_like_the_unmerged_one(tiny_model):
    merged = load_model(make_settings(tiny_model, merge=True))
    assert merged.merged and merged.served == {"demo-adapter": None}  # the weights carry it
    eng = Engine(merged, max_batch_size=2)
    eng.start()
    try:
        for prompt, (_, adapter_reply) in DEMO_REPLIES.items():
            text, _ = await generate(eng, merged, prompt, greedy())
            assert text == adapter_reply
    finally:
        eng.stop()


async def test_batched_greedy_output_equals_running_alone(engine, unmerged):
    # Text past the taught reply (eos ignored) is where batching errors would show. The demo
    # model's sentences follow a prompt's words, so each prompt is about something else.
    subjects = ["adapters", "quota", "tokens", "deploying", "streaming", "temperature", "merging", "the context"]
    prompts = [f"prompt number {i} " + f"{subjects[i]} " * (i * 3 + 1) for i in range(8)]
    params = greedy(max_tokens=48, ignore_eos=True)
    alone = [await generate(engine, unmerged, p, params, use_adapter=i % 2 == 0) for i, p in enumerate(prompts)]
    engine.peak_batch = 0

    async def staggered(i, p):
        await asyncio.sleep(0.002 * i)  # rows join a batch that is already decoding
        return await generate(engine, unmerged, p, params, use_adapter=i % 2 == 0)

    together = await asyncio.gather(*(staggered(i, p) for i, p in enumerate(prompts)))
    assert engine.peak_batch >= 4, "the requests were not decoded together"
    assert [t for t, _ in together] == [t for t, _ in alone]
    # Arriving at once: prefilled together too (left-padded prompts of different lengths).
    engine.peak_prefill = 0
    at_once = await asyncio.gather(*(generate(engine, unmerged, p, params, use_adapter=i % 2 == 0)
                                     for i, p in enumerate(prompts)))
    assert engine.peak_prefill >= 2, "the prompts were not prefilled together"
    assert [t for t, _ in at_once] == [t for t, _ in alone]
    assert len({t for t, _ in alone}) == len(prompts), "each prompt should produce its own text"
    assert all(d.completion_tokens == 48 and d.reason == "length" for _, d in together)


def test_the_demo_model_builds_the_same_weights_every_time(tiny_model, tmp_path):
    # The test above once saw two prompts give the same text: each build drew the word
    # vectors in get_vocab()'s order, which a Rust HashMap changes from build to build.
    from inference_server.demo_model import build_demo_model

    again = build_demo_model(tmp_path)
    for folder, name in [("model_dir", "model.safetensors"), ("model_dir", "tokenizer.json"),
                         ("adapter_dir", "adapter_model.safetensors")]:
        ours, theirs = getattr(again, folder) / name, getattr(tiny_model, folder) / name
        assert ours.read_bytes() == theirs.read_bytes(), f"{name} differs between two builds"


async def test_seeded_sampling_is_reproducible_alone_and_batched(engine, unmerged):
    params = SamplingParams(max_tokens=32, temperature=1.0, top_p=0.9, seed=1234, ignore_eos=True)
    first, _ = await generate(engine, unmerged, "hello", params)
    results = await asyncio.gather(*(generate(engine, unmerged, "hello", params) for _ in range(3)))
    assert all(text == first for text, _ in results)
    other, _ = await generate(engine, unmerged, "hello", SamplingParams(32, 1.0, 0.9, seed=99, ignore_eos=True))
    assert other != first


def test_stop_matcher_holds_back_partial_stop_strings():
    m = StopMatcher(("STOP", "xyz"))
    assert m.push("abc ST") == ("abc ", False)  # "ST" might begin "STOP"
    assert m.push("O") == ("", False)
    assert m.push("P and more") == ("", True)  # nothing after the stop is released
    m = StopMatcher(("STOP",))
    assert m.push("ST") == ("", False)
    assert m.push("ART") == ("START", False)  # ruled out: released at once
    assert m.push("x") == ("x", False)
    assert StopMatcher(()).push("STOP") == ("STOP", False)


async def test_stop_string_ends_the_reply_before_it(engine, unmerged):
    text, done = await generate(engine, unmerged, "hello", greedy(stop=("adapter",)))
    assert (text, done.reason) == ("Hi! The ", "stop")
    # Split across tokens: "says h" never arrives as one token.
    text, done = await generate(engine, unmerged, "hello", greedy(stop=("says h",)))
    assert (text, done.reason) == ("Hi! The adapter ", "stop")


async def test_max_tokens_ends_with_length(engine, unmerged):
    text, done = await generate(engine, unmerged, "hello", greedy(max_tokens=3))
    assert done.reason == "length" and done.completion_tokens == 3
    assert "Hi! The adapter says hello.".startswith(text) and text


async def test_cancel_frees_the_slot_for_the_next_request(unmerged):
    eng = Engine(unmerged, max_batch_size=1, max_queue=4)
    eng.start()
    try:
        long = eng.submit(chat_ids(unmerged, "x"), greedy(max_tokens=480, ignore_eos=True),
                          use_adapter=True, timeout_s=30)
        await long.next_output()  # it is generating
        waiting = eng.submit(chat_ids(unmerged, "hello"), greedy(), use_adapter=True, timeout_s=30)
        assert eng.queue_depth == 1
        started = time.perf_counter()
        long.cancel()
        text, done = await waiting.result()
        assert text == DEMO_REPLIES["hello"][1]
        assert time.perf_counter() - started < 0.25
        _, cancelled = await long.result()
        assert cancelled.reason == "cancelled" and cancelled.completion_tokens < 480
    finally:
        eng.stop()


async def test_timeout_while_generating_ends_with_length(engine, unmerged):
    text, done = await generate(engine, unmerged, "x", greedy(max_tokens=480, ignore_eos=True), timeout_s=0.05)
    assert done.reason == "length" and done.timed_out
    assert 0 < done.completion_tokens < 480


async def test_timeout_while_queued_is_an_error(unmerged):
    eng = Engine(unmerged, max_batch_size=1, max_queue=4)
    eng.start()
    try:
        busy = eng.submit(chat_ids(unmerged, "x"), greedy(max_tokens=400, ignore_eos=True),
                          use_adapter=True, timeout_s=30)
        late = eng.submit(chat_ids(unmerged, "hello"), greedy(), use_adapter=True, timeout_s=0.05)
        _, done = await late.result()
        assert done.reason == "error" and done.queue_timeout and done.completion_tokens == 0
        busy.cancel()
    finally:
        eng.stop()


async def test_full_queue_raises_queue_full_with_a_retry_hint(unmerged):
    eng = Engine(unmerged, max_batch_size=1, max_queue=1)
    eng.start()
    try:
        params = greedy(max_tokens=400, ignore_eos=True)
        first = eng.submit(chat_ids(unmerged, "x"), params, use_adapter=True, timeout_s=30)
        await first.next_output()
        second = eng.submit(chat_ids(unmerged, "y"), params, use_adapter=True, timeout_s=30)
        with pytest.raises(QueueFull) as caught:
            eng.submit(chat_ids(unmerged, "z"), params, use_adapter=True, timeout_s=30)
        assert caught.value.retry_after_s >= 1
        first.cancel()
        second.cancel()
    finally:
        eng.stop()


async def test_no_adapter_serves_the_base_alone(tiny_model):
    base = load_model(make_settings(tiny_model, no_adapter=True, adapter_path=None))
    assert base.served == {"demo-model": None} and base.adapter_id is None
    eng = Engine(base)
    eng.start()
    try:
        text, _ = await generate(eng, base, "hello", greedy(), use_adapter=False)
        assert text == DEMO_REPLIES["hello"][0]
    finally:
        eng.stop()


def test_a_chat_template_is_required_and_can_come_from_a_file(tiny_model, tmp_path):
    import shutil

    from inference_server.loading import LoadError

    bare = tmp_path / "no-template"
    shutil.copytree(tiny_model.model_dir, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(LoadError, match="--chat-template"):
        load_model(make_settings(tiny_model, model_path=bare))
    template = tmp_path / "template.jinja"
    template.write_text(CHAT_TEMPLATE)
    loaded = load_model(make_settings(tiny_model, model_path=bare, chat_template=template))
    assert loaded.encode_chat([{"role": "user", "content": "hello"}]) == chat_ids(
        load_model(make_settings(tiny_model)), "hello")


def test_device_and_dtype_choice_on_a_cpu_machine(tiny_model):
    import torch

    from inference_server.loading import LoadError

    loaded = load_model(make_settings(tiny_model, device="auto"))
    assert (loaded.device.type, loaded.dtype) == ("cpu", torch.float32)
    assert next(loaded.model.parameters()).dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(LoadError, match="CUDA"):
            load_model(make_settings(tiny_model, device="cuda"))
