"""The demo model reads as text: whole sentences, a paragraph long, a list now and then, paced on request."""

from __future__ import annotations

import re
import time

import pytest

from inference_server.demo_corpus import LISTS, OPENERS, SENTENCES
from inference_server.demo_model import CONTEXT_TOKENS
from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from tests.fixtures_model import make_settings

QUESTIONS = ["What is a LoRA adapter?", "How do I deploy to Azure?", "Why is the answer slow?",
             "What does temperature do?", "hello there", "Tell me about GPU quota", "x", "¿Qué tal? 日本語"]
KNOWN = set(OPENERS) | set(SENTENCES) | {intro for intro, _ in LISTS} | {item for _, items in LISTS for item in items}


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_model(make_settings(tiny_model, merge=True))


async def _answer(engine, loaded, question: str, params: SamplingParams) -> tuple[str, object]:
    ids = loaded.encode_chat([{"role": "user", "content": question}])
    return await engine.submit(ids, params, use_adapter=True, timeout_s=30).result()


def _sentences(text: str) -> list[str]:
    """Split an answer back into the corpus' sentences and list items."""
    parts = []
    for block in text.split("\n"):
        block = block.strip()
        if block.startswith("- "):
            parts.append(block[2:])
        elif block:
            parts += re.findall(r".+?[.:!?](?= |$)", block)
    return [p.strip() for p in parts]


async def test_answers_are_whole_sentences_a_paragraph_long_with_a_list_now_and_then(loaded):
    engine = Engine(loaded, max_batch_size=8)
    engine.start()
    try:
        answers = []
        for round_ in range(4):
            for i, q in enumerate(QUESTIONS):
                text, done = await _answer(engine, loaded, q, SamplingParams(400, 0.7, seed=100 * round_ + i))
                answers.append((text, done))
    finally:
        engine.stop()
    for text, done in answers:
        assert done.reason == "stop" and "\ufffd" not in text
        sentences = _sentences(text)
        assert len(sentences) >= 2, text
        assert set(sentences) <= KNOWN, set(sentences) - KNOWN
        assert text.startswith(tuple(OPENERS))
    words = sorted(len(t.split()) for t, _ in answers)
    assert words[len(words) // 2] >= 25, words  # a typical answer is a paragraph, not a line
    assert sum("\n- " in t for t, _ in answers) >= 2  # lists now and then...
    assert sum("\n- " in t for t, _ in answers) <= len(answers) // 2  # ...not every time
    assert len({t for t, _ in answers}) >= len(answers) * 3 // 4


async def test_min_step_interval_paces_generation_and_zero_does_not(loaded):
    paced = Engine(loaded, max_batch_size=2, min_step_interval=0.05)
    paced.start()
    try:
        started = time.perf_counter()
        _, done = await _answer(paced, loaded, "hello", SamplingParams(6, 0.0))
        assert time.perf_counter() - started >= 4 * 0.05  # the first step also decodes: 5 steps
        assert done.completion_tokens == 6
    finally:
        paced.stop()


def test_the_context_window_is_the_demo_builds(loaded):
    assert loaded.context_len == CONTEXT_TOKENS
