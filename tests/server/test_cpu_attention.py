"""Decode attention that skips the batch's KV padding on a CPU (``inference_server/cpu_attention.py``),
on the real tiny model: the padded rows give SDPA's logits, the per-row path is really taken
only for padded batched decode steps, and batched answers do not change."""

from __future__ import annotations

import pytest
import torch
import transformers.integrations.sdpa_attention as sdpa_module
from transformers import DynamicCache

from inference_server import cpu_attention
from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from tests.fixtures_model import make_settings


@pytest.fixture(scope="module")
def pair(tiny_model):
    ours = load_model(make_settings(tiny_model, merge=True))
    plain = load_model(make_settings(tiny_model, merge=True))
    cpu_attention.stop_using(plain.model)
    return ours, plain


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Every SDPA call made through transformers: (rows, query length, had a mask)."""
    calls: list[tuple[int, int, bool]] = []
    real = sdpa_module.sdpa_attention_forward

    def counting(module, query, key, value, attention_mask, **kwargs):
        calls.append((query.shape[0], query.shape[2], attention_mask is not None))
        return real(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setattr(sdpa_module, "sdpa_attention_forward", counting)
    return calls


def padded_batch(lengths: list[int], vocab: int):
    width = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), width))
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
    return ids, mask


def decode_step(loaded, ids, mask):
    """Prefill the left-padded prompts, then one decode step, as the engine does; its logits."""
    model = loaded.model
    with torch.inference_mode():
        cache = {loaded.cache_kwarg: DynamicCache()}
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **cache)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        return model(input_ids=ids[:, -1:], attention_mask=mask, position_ids=positions[:, -1:] + 1, use_cache=True,
                     logits_to_keep=1, **cache).logits


def test_the_loaded_model_uses_it_and_padded_rows_give_sdpa_logits(pair, sdpa_calls):
    ours, plain = pair
    assert ours.model.config._attn_implementation == cpu_attention.NAME
    assert plain.model.config._attn_implementation == "sdpa"
    layers = ours.model.config.num_hidden_layers
    ids, mask = padded_batch([5, 17, 30, 9], ours.model.config.vocab_size)
    mine = decode_step(ours, ids, mask)
    # The prefill: one call per layer with the mask; the decode step: one call per row per layer, no mask.
    assert sdpa_calls == [(4, 30, True)] * layers + [(1, 1, False)] * (4 * layers)
    torch.testing.assert_close(mine, decode_step(plain, ids, mask), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lengths", [[12], [29, 30, 30, 30]], ids=["one row", "little padding"])
def test_one_row_or_little_padding_stays_one_batched_sdpa_call(pair, sdpa_calls, lengths):
    ours, plain = pair
    ids, mask = padded_batch(lengths, ours.model.config.vocab_size)
    mine = decode_step(ours, ids, mask)
    assert all(rows == len(lengths) for rows, _, _ in sdpa_calls)
    torch.testing.assert_close(mine, decode_step(plain, ids, mask))


def test_a_row_whose_visible_cells_are_not_one_run_goes_to_sdpa_whole(pair, sdpa_calls):
    mask = torch.zeros(3, 1, 1, 20, dtype=torch.bool)
    mask[0, ..., 10:] = True
    mask[1, ..., 2:20] = True
    mask[2, ..., 4:20] = True
    mask[2, ..., 8] = False  # a hole: not a left-padded row
    assert cpu_attention._row_spans(mask) is None
    mended = mask.clone()  # a new mask, as every forward builds (the spans are kept per mask object)
    mended[2, ..., 8] = True
    assert cpu_attention._row_spans(mended) == [(10, 20), (2, 20), (4, 20)]
    nearly_full = torch.ones(3, 1, 1, 20, dtype=torch.bool)
    nearly_full[1:, ..., 0] = False
    assert cpu_attention._row_spans(nearly_full) is None  # 2 of 60 cells are padding: one batched call


async def test_batched_greedy_answers_of_mixed_lengths_are_the_same_with_it_or_not(pair):
    prompts = ["hi", "tell me about adapters and tokens and the file share in detail please", "tea?",
               "what does the local cloud do when a replica sleeps and a request comes in"]
    texts = []
    for loaded in pair:
        engine = Engine(loaded, max_batch_size=8)
        engine.start()
        try:
            handles = [engine.submit(loaded.encode_chat([{"role": "user", "content": p}]),
                                     SamplingParams(max_tokens=32, temperature=0.0), use_adapter=None, timeout_s=60)
                       for p in prompts]
            texts.append([(await h.result())[0] for h in handles])
        finally:
            engine.stop()
        assert engine.peak_batch >= 2
    assert texts[0] == texts[1] and all(texts[0])


def test_it_is_off_with_the_flag_or_the_environment(tiny_model, monkeypatch):
    from inference_server.__main__ import build_parser
    from inference_server.settings import ServerSettings

    assert build_parser().parse_args(["--no-cpu-skip-padding"]).cpu_skip_padding is False
    monkeypatch.setenv("AITK_CPU_SKIP_PADDING", "false")
    assert ServerSettings(model_path="m", no_adapter=True).cpu_skip_padding is False
    off = load_model(make_settings(tiny_model, merge=True, cpu_skip_padding=False))
    assert off.model.config._attn_implementation == "sdpa"


def test_a_mask_shared_by_the_batch_goes_to_sdpa_whole(sdpa_calls):
    """A mask broadcast over the batch (first dimension 1) has no row per row: one SDPA call."""
    import types

    layer = types.SimpleNamespace(is_causal=True, training=False)  # no grouped heads
    query, key, value = torch.randn(3, 4, 1, 8), torch.randn(3, 4, 20, 8), torch.randn(3, 4, 20, 8)
    shared = torch.zeros(1, 1, 1, 20, dtype=torch.bool)
    shared[..., 12:] = True
    out, _ = cpu_attention.decode_attention(layer, query, key, value, shared, scaling=8 ** -0.5)
    assert sdpa_calls == [(3, 1, True)]
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=shared, scale=8 ** -0.5)
    torch.testing.assert_close(out, expected.transpose(1, 2))
