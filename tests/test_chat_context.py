"""Fitting a conversation into the model's context (aitk_tui.chat.context) and the limit's sources."""

from __future__ import annotations

import httpx
import pytest

from aitk_tui.chat.client import ChatClient
from aitk_tui.chat.context import ContextBudget, parse_context_error


def _pair(i: int, size: int = 100) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"q{i} " + "u" * size}, {"role": "assistant", "content": f"a{i} " + "a" * size}]


def test_aitk_and_openai_and_vllm_context_errors_are_read():
    aitk = ("This model's maximum context length is 1024 tokens. However, your messages resulted in "
            "1100 tokens.")
    vllm = ("This model's maximum context length is 2048 tokens. However, you requested 2600 tokens "
            "(2100 in the messages, 500 in the completion). Please reduce the length of the messages or completion.")
    assert parse_context_error(aitk) == (1024, 1100)
    assert parse_context_error(vllm) == (2048, 2100)
    assert parse_context_error("maximum context length is 4096 tokens") == (4096, None)
    for other in (None, "", "rate limited", "maximum context length is many tokens", "9" * 5000):
        assert parse_context_error(other) is None


def test_the_earliest_exchanges_are_left_out_until_the_prompt_fits():
    budget = ContextBudget(limit=400)
    pairs = [_pair(i) for i in range(6)]
    fitted = budget.fit([{"role": "system", "content": "Be brief."}], pairs, {"role": "user", "content": "now"}, 64)
    assert 0 < fitted.dropped_pairs < 6
    assert fitted.estimate <= 400 - 64
    assert fitted.messages[0] == {"role": "system", "content": "Be brief."}  # always kept
    assert fitted.messages[-1] == {"role": "user", "content": "now"}  # always sent
    assert fitted.messages[1]["content"].startswith(f"q{fitted.dropped_pairs} ")  # oldest went first
    # Leaving out one exchange fewer would not have fit.
    one_more = fitted.messages[:1] + pairs[fitted.dropped_pairs - 1] + fitted.messages[1:]
    assert budget.estimate(one_more) > 400 - 64


def test_without_a_known_limit_everything_is_sent_and_at_least_is_honoured():
    pairs = [_pair(i) for i in range(3)]
    fitted = ContextBudget().fit([], pairs, {"role": "user", "content": "x"}, None)
    assert fitted.dropped_pairs == 0 and len(fitted.messages) == 7
    fitted = ContextBudget().fit([], pairs, {"role": "user", "content": "x"}, None, at_least=99)
    assert fitted.dropped_pairs == 3 and fitted.messages == [{"role": "user", "content": "x"}]


def test_a_prompt_too_long_for_the_context_alone_is_sent_alone():
    budget = ContextBudget(limit=50)
    fitted = budget.fit([], [_pair(0)], {"role": "user", "content": "y" * 10_000}, 10)
    assert fitted.dropped_pairs == 1 and len(fitted.messages) == 1


def test_the_ratio_is_learnt_from_the_servers_counts_and_odd_numbers_are_ignored():
    budget = ContextBudget(limit=1000)
    messages = [{"role": "user", "content": "x" * 400}]
    budget.learn_usage(messages, 104)  # 100 text tokens + 4 for the template: 4 characters per token
    assert budget.chars_per_token == pytest.approx(4.0)
    assert budget.estimate(messages) == 100 + 4 + 2
    for odd in (None, 0, -5, 3):  # no text tokens left after the template: nothing to learn
        budget.learn_usage(messages, odd)
    assert budget.chars_per_token == pytest.approx(4.0)
    budget.learn_usage([{"role": "user", "content": ""}], 50)
    assert budget.chars_per_token == pytest.approx(4.0)
    for bad in (0, -1, True, 2**64, 1.5, "1024", None):
        budget.learn_limit(bad)  # type: ignore[arg-type]
    assert budget.limit == 1000
    assert budget.reserve(None) == 250 and budget.reserve(100) == 100 and budget.reserve(10**9) == 250


async def test_max_model_len_comes_from_v1_models_and_junk_values_are_ignored():
    cards = [{"id": "base", "max_model_len": 2048}, {"id": "lora", "parent": "base", "max_model_len": 1024},
             {"id": "a", "max_model_len": 2**64}, {"id": "b", "max_model_len": "512"},
             {"id": "c", "max_model_len": True}, {"id": "d", "max_model_len": -1}, {"id": "e"}]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": cards})

    async with ChatClient("http://127.0.0.1:1", None, transport=httpx.MockTransport(answer)) as client:
        info = await client.default_model_info()
        assert (info.id, info.max_model_len) == ("lora", 1024)
        assert [m.max_model_len for m in await client.models()] == [2048, 1024, None, None, None, None, None]
