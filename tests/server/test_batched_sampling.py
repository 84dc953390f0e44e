"""Sampling a whole decode step at once (issue 21): the right distribution per row, each row by
its own temperature, top_p and seed whatever its neighbours, and one read-back per step."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch

from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from inference_server import sampling
from inference_server.sampling import INVALID, sample_rows
from tests.fixtures_model import make_settings


@pytest.fixture(scope="module")
def loaded(tiny_model):
    torch.set_num_threads(1)
    return load_model(make_settings(tiny_model, merge=False))


def ids(loaded, text: str) -> list[int]:
    return loaded.encode_chat([{"role": "user", "content": text}])


def test_each_row_draws_from_its_own_tempered_nucleus():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]])
    grid = (torch.arange(1000, dtype=torch.float32) + 0.5) / 1000  # evenly spaced draws: exact frequencies
    batch = logits.expand(1000, -1)

    def counts(temperature: float, top_p: float) -> list[int]:
        tokens = sample_rows(batch, [temperature] * 1000, [top_p] * 1000, grid)
        return torch.bincount(tokens, minlength=5).tolist()

    for temperature in (0.7, 1.0, 1.5):
        expected = torch.softmax(logits[0] / temperature, dim=-1) * 1000
        assert all(abs(c - e) <= 1 for c, e in zip(counts(temperature, 1.0), expected.tolist(), strict=True))
    # top_p 0.8 at temperature 1: the first token holds 0.641 of the mass (short of 0.8), two
    # hold 0.877, so the nucleus is those two.
    probs = torch.softmax(logits[0], dim=-1)[:2]
    expected = (probs / probs.sum() * 1000).tolist() + [0, 0, 0]
    assert all(abs(c - e) <= 1 for c, e in zip(counts(1.0, 0.8), expected, strict=True))
    assert counts(1.0, 1e-300) == [1000, 0, 0, 0, 0]  # the top token always stays in the nucleus
    # A row that is not a distribution fails alone; its neighbours are drawn as usual.
    mixed = torch.stack([logits[0], torch.full((5,), float("nan")), logits[0]])
    tokens = sample_rows(mixed, [1.0, 1.0, 0.5], [0.9, 0.9, 1.0], torch.tensor([0.0, 0.5, 0.999]))
    assert tokens.tolist() == [0, INVALID, 3]


def test_a_decode_step_reads_its_tokens_back_once(loaded, monkeypatch):
    engine = Engine(loaded, max_batch_size=8)
    rows = [SimpleNamespace(done=False, handle=SimpleNamespace(params=SamplingParams(
        max_tokens=8, temperature=0.7 + 0.1 * i, top_p=0.9 if i % 2 else 1.0, seed=i)),
        generator=torch.Generator().manual_seed(i)) for i in range(8)]
    rows[3].handle.params = SamplingParams(max_tokens=8, temperature=0.0)  # a greedy row among them
    logits = torch.randn(8, len(loaded.tokenizer), generator=torch.Generator().manual_seed(0))
    reads = []
    for name in ("tolist", "item", "__int__", "__bool__", "__float__", "__index__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, _name=name: (
            reads.append(_name), _real(self, *a))[1])
    tokens = engine._sample(rows, logits)
    monkeypatch.undo()
    # Was one int(multinomial(...)) per sampled row, plus the argmax. A CPU also checks once
    # which rows' nucleus goes past their most likely tokens (free there; a GPU sorts instead).
    assert reads == ["__bool__", "tolist"], reads
    assert len(tokens) == 8 and tokens[3] == int(logits[3].argmax())
    assert all(0 <= t < logits.shape[1] for t in tokens)


async def test_a_seeded_request_makes_the_same_text_alone_and_among_other_sampled_rows(loaded):
    engine = Engine(loaded, max_batch_size=8)
    engine.start()
    chat = SamplingParams(max_tokens=32, temperature=0.7, top_p=0.9, seed=1234, ignore_eos=True)
    neighbours = [
        SamplingParams(max_tokens=40, temperature=1.3, top_p=1.0, seed=5, ignore_eos=True),
        SamplingParams(max_tokens=24, temperature=0.7, top_p=0.5, ignore_eos=True),  # unseeded
        SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True),
        SamplingParams(max_tokens=40, temperature=1.0, top_p=0.95, seed=1234, ignore_eos=True),
    ]

    async def run(text: str, params: SamplingParams, adapter=True) -> str:
        return (await engine.submit(ids(loaded, text), params, use_adapter=adapter, timeout_s=60).result())[0]

    try:
        alone = await run("tell me a story", chat)
        alone_base = await run("count to five", chat, adapter=False)
        engine.peak_batch = 0
        together = await asyncio.gather(run("tell me a story", chat), run("count to five", chat, adapter=False),
                                        *(run(p, params, i % 2 == 0) for i, (p, params) in enumerate(zip(
                                            ["hello", "what is your name?", "hello", "count to five"], neighbours,
                                            strict=True))))
        again = await run("tell me a story", SamplingParams(32, 0.7, 0.9, seed=99, ignore_eos=True))
    finally:
        engine.stop()
    assert engine.peak_batch >= 5, "the rows were not decoded together"
    assert together[:2] == [alone, alone_base]
    assert again != alone  # the seed matters


def test_a_cpu_takes_the_nucleus_from_the_top_tokens_and_sorts_only_the_rows_they_do_not_hold(monkeypatch):
    # Sorting Phi-3's 32,064 tokens cost 2.2 ms a row on one CPU thread (17 ms of an 8-row step
    # of about 50 ms). Rows whose most likely tokens hold the nucleus pick from them; a flat row
    # is sorted whole; each gives the token the full sort gives for the same draw.
    vocab = 32064
    gen = torch.Generator().manual_seed(0)
    peaked = torch.randn(6, vocab, generator=gen) * 6  # a trained model's kind: a nucleus of a few tokens
    flat = torch.randn(2, vocab, generator=gen) * 0.5  # a nucleus of thousands
    logits = torch.cat([peaked[:3], flat[:1], peaked[3:], flat[1:]])
    temperatures = [0.7, 1.0, 0.7, 0.7, 0.9, 0.7, 0.2, 1.0]
    top_ps = [0.9, 0.95, 1.0, 0.9, 0.8, 0.9, 1e-300, 0.5]
    uniforms = torch.rand(8, generator=gen)
    sorts = []
    real_sort = torch.sort
    monkeypatch.setattr(torch, "sort", lambda x, *a, **k: (sorts.append(x.shape[0]), real_sort(x, *a, **k))[1])
    fast = sample_rows(logits, temperatures, top_ps, uniforms).tolist()
    assert sorts == [2], sorts  # only the two flat rows were sorted whole (was every row)
    alone = [sample_rows(logits[i:i + 1], temperatures[i:i + 1], top_ps[i:i + 1], uniforms[i:i + 1]).item()
             for i in range(8)]
    monkeypatch.setattr(sampling, "NUCLEUS_TOP", vocab)  # every row sorted whole
    sorted_whole = sample_rows(logits, temperatures, top_ps, uniforms).tolist()
    assert fast == alone == sorted_whole
    assert fast[6] == int(logits[6].argmax())  # a top_p below float32's resolution keeps the top token
    broken = logits.clone()
    broken[1] = float("nan")  # a row that is not a distribution fails alone on this path too
    assert sample_rows(broken, temperatures, top_ps, uniforms).tolist() == [*fast[:1], INVALID, *fast[2:]]
    # Each pick lies in its row's nucleus, computed here from a full sort.
    for i in (0, 1, 3, 4, 5, 7):
        probs, order = real_sort(torch.softmax(logits[i] / temperatures[i], dim=-1), descending=True)
        kept = order[(probs.cumsum(0) - probs) < top_ps[i]].tolist()
        assert fast[i] in kept
