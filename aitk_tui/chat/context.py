"""Keeping a conversation inside the model's context window (no Textual: the TUI and tests use it).

The client has no tokenizer, so it estimates tokens from characters, with the ratio learnt
from the server's own counts: ``usage.prompt_tokens`` after each answer, or the numbers a
context-length 400 names. Until then it assumes few characters per token, so it rather
leaves a turn out too early than sends a prompt the server refuses. The limit itself comes
from ``/v1/models`` (``max_model_len``, as vLLM and aitk's server report it) or the 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ContextBudget", "Fitted", "parse_context_error"]

# OpenAI: "maximum context length is 4097 tokens. However, your messages resulted in 5000 tokens"
# vLLM:   "maximum context length is 2048 tokens. However, you requested 2100 tokens (1600 in the messages, ...)"
_LIMIT = re.compile(r"maximum context length is (\d{1,9}) tokens", re.IGNORECASE)
_USED = (re.compile(r"(\d{1,9}) (?:tokens )?in the messages", re.IGNORECASE),
         re.compile(r"messages resulted in (\d{1,9}) tokens", re.IGNORECASE))

#: Template tokens around each message (role markers, end marker, newline).
PER_MESSAGE = 4
#: Characters per token assumed before the server has told us anything (English BPE is ~4).
DEFAULT_CHARS_PER_TOKEN = 2.5


def parse_context_error(text: str | None) -> tuple[int, int | None] | None:
    """``(limit, tokens the messages took)`` from a context-length error message, else None."""
    if not text:
        return None
    limit = _LIMIT.search(text)
    if limit is None:
        return None
    used = next((m for m in (p.search(text) for p in _USED) if m), None)
    return int(limit.group(1)), int(used.group(1)) if used else None


@dataclass(frozen=True)
class Fitted:
    messages: list[dict[str, str]]
    dropped_pairs: int  # earliest user/assistant exchanges left out of this request
    estimate: int  # estimated prompt tokens of ``messages``


def _chars(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages)


class ContextBudget:
    """What one endpoint's model can take, learnt as the conversation goes."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit and limit > 0 else None
        self.chars_per_token = DEFAULT_CHARS_PER_TOKEN
        self._measured = False

    def learn_limit(self, limit: int | None) -> None:
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < 1 << 40:
            self.limit = limit

    def learn_usage(self, messages: Sequence[Mapping[str, str]], prompt_tokens: int | None) -> None:
        """The server counted ``prompt_tokens`` for ``messages``: update the characters-per-token ratio."""
        if not prompt_tokens or prompt_tokens <= 0:
            return
        text_tokens = prompt_tokens - PER_MESSAGE * len(messages)
        chars = _chars(messages)
        if text_tokens <= 0 or chars <= 0:
            return
        ratio = chars / text_tokens
        # The lower of the last two: a prompt of code or numbers packs fewer characters per token.
        self.chars_per_token = min(ratio, self.chars_per_token) if self._measured else ratio
        self.chars_per_token = max(0.5, self.chars_per_token)
        self._measured = True

    def estimate(self, messages: Sequence[Mapping[str, str]]) -> int:
        return sum(math.ceil(len(m["content"]) / self.chars_per_token) + PER_MESSAGE for m in messages) + 2

    def reserve(self, max_tokens: int | None) -> int:
        """Room kept for the answer: what was asked for, at most a quarter of the context."""
        assert self.limit is not None
        wanted = max_tokens if max_tokens and max_tokens > 0 else 512
        return max(1, min(wanted, self.limit // 4))

    def fit(self, system: Sequence[Mapping[str, str]], pairs: Sequence[Sequence[Mapping[str, str]]],
            prompt: Mapping[str, str], max_tokens: int | None, *, at_least: int = 0) -> Fitted:
        """Leave out the earliest exchanges (``pairs``, oldest first) until the prompt fits.

        The system prompt and the new message are always sent; when they alone do not fit,
        everything else is left out and the server's answer says why. ``at_least`` exchanges
        are left out whatever the estimate (after the server refused a prompt).
        """
        def build(drop: int) -> list[dict[str, str]]:
            out = [dict(m) for m in system]
            for pair in pairs[drop:]:
                out.extend(dict(m) for m in pair)
            out.append(dict(prompt))
            return out

        drop = min(max(0, at_least), len(pairs))
        messages = build(drop)
        if self.limit is None:
            return Fitted(messages, drop, self.estimate(messages))
        budget = self.limit - self.reserve(max_tokens)
        while drop < len(pairs) and self.estimate(messages) > budget:
            drop += 1
            messages = build(drop)
        return Fitted(messages, drop, self.estimate(messages))
