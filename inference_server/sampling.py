"""Sampling one row's next token: temperature, then top-p, from the row's own generator."""

from __future__ import annotations

from typing import Any

# Below this a temperature samples greedily, as in vLLM (_SAMPLING_EPS): dividing logits by
# e.g. 2e-38 overflows float32 to inf and softmax then yields NaN.
GREEDY_BELOW_TEMPERATURE = 1e-5


def sample_row(row: Any, logits) -> int:
    """``row`` has ``handle.params`` (temperature, top_p) and ``generator`` (seeded per request)."""
    import torch

    p = row.handle.params
    scores = logits / p.temperature
    if p.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        sorted_probs = torch.softmax(sorted_scores, dim=-1)
        # Drop a token once the mass before it reaches top_p. The top one always stays: a
        # top_p below float32's resolution (1e-300 rounds to 0) would otherwise cut it too.
        cut = sorted_probs.cumsum(dim=-1) - sorted_probs >= p.top_p
        cut[0] = False
        scores = scores.scatter(0, order[cut], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=row.generator))
