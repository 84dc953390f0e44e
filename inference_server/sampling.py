"""Sampling a decode step's next tokens for the whole batch at once: temperature, then top-p,
each row with its own parameters and its own seeded generator.

A row's draw is one uniform number from its generator (``draw``, the only per-row call, and
it leaves the number on the device); the rest is batched: scale, sort (rows with a top_p
below 1), softmax, cut the nucleus, and pick by inverse CDF (the first token whose
cumulative probability passes the draw). Every row is computed by the same operations
whatever its neighbours, so a seeded request makes the same text alone or in any batch.
The engine reads the tokens back in one transfer per step (``tokens.tolist()``); a row
whose numbers are not a distribution (NaN, inf) comes back as ``INVALID`` and fails alone.
"""

from __future__ import annotations

from typing import Any

# Below this a temperature samples greedily, as in vLLM (_SAMPLING_EPS): dividing logits by
# e.g. 2e-38 overflows float32 to inf and softmax then yields NaN.
GREEDY_BELOW_TEMPERATURE = 1e-5
INVALID = -1  # the token of a row whose probabilities were not finite


def draw(generator: Any, device: Any):
    """One uniform number in [0, 1) from a row's generator, left on ``device`` (no sync)."""
    import torch

    return torch.rand(1, generator=generator, device=device)


def sample_rows(logits, temperatures: list[float], top_ps: list[float], uniforms):
    """Tokens for the rows of ``logits`` [rows, vocab] (float), with each row's temperature,
    top_p and uniform draw (``uniforms``: a tensor of [rows]); a tensor of [rows] on the
    device. Which rows need a sort is known on the host, so nothing here waits for the device."""
    import torch

    device = logits.device
    tokens = torch.full((logits.shape[0],), INVALID, dtype=torch.long, device=device)
    scores = logits / torch.tensor(temperatures, dtype=logits.dtype, device=device).unsqueeze(1)
    # Each row takes one of two paths by its own top_p, never by its neighbours'.
    for sort in (True, False):
        chosen = [i for i, p in enumerate(top_ps) if (p < 1.0) == sort]
        if not chosen:
            continue
        idx = torch.tensor(chosen, device=device)
        rows = scores.index_select(0, idx)
        if sort:
            rows, order = torch.sort(rows, dim=-1, descending=True)
        probs = torch.softmax(rows, dim=-1)
        if sort:
            # Drop a token once the mass before it reaches top_p. The top one always stays: a
            # top_p below float32's resolution (1e-300 rounds to 0) would otherwise cut it too.
            top_p = torch.tensor([top_ps[i] for i in chosen], dtype=probs.dtype, device=device).unsqueeze(1)
            cut = probs.cumsum(dim=-1) - probs >= top_p
            cut[:, 0] = False
            probs = probs.masked_fill(cut, 0.0)
        cdf = probs.cumsum(dim=-1)
        total = cdf[:, -1]
        target = (uniforms.index_select(0, idx) * total).unsqueeze(1)
        # The first token whose cumulative probability passes the draw: never one of
        # probability 0 (its cumulative value equals the one before it).
        picked = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp(max=cdf.shape[1] - 1)
        if sort:
            picked = order.gather(1, picked.unsqueeze(1)).squeeze(1)
        valid = torch.isfinite(total) & (total > 0)
        tokens.index_copy_(0, idx, torch.where(valid, picked, torch.full_like(picked, INVALID)))
    return tokens
