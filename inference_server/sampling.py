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
    device. The per-row settings go to the device in one copy and nothing here waits for it."""
    import torch

    device = logits.device
    settings = torch.tensor([temperatures, top_ps], dtype=logits.dtype).to(device, non_blocking=True)
    scores = logits / settings[0].unsqueeze(1)
    # Each row takes one path by its own top_p, never by its neighbours': rows with a top_p
    # below 1 pick from their sorted nucleus, the others from the vocabulary as it stands.
    nucleus = [p < 1.0 for p in top_ps]
    picks = {}
    for sort in {*nucleus}:
        rows = scores
        if sort:
            rows, order = torch.sort(rows, dim=-1, descending=True)
        probs = torch.softmax(rows, dim=-1)
        if sort:
            # Drop a token once the mass before it reaches top_p. The top one always stays: a
            # top_p below float32's resolution (1e-300 rounds to 0) would otherwise cut it too.
            cut = probs.cumsum(dim=-1) - probs >= settings[1].unsqueeze(1)
            cut[:, 0] = False
            probs = probs.masked_fill(cut, 0.0)
        cdf = probs.cumsum(dim=-1)
        total = cdf[:, -1]
        # The first token whose cumulative probability passes the draw: never one of
        # probability 0 (its cumulative value equals the one before it).
        picked = torch.searchsorted(cdf, (uniforms * total).unsqueeze(1), right=True).squeeze(1)
        picked = picked.clamp(max=cdf.shape[1] - 1)
        if sort:
            picked = order.gather(1, picked.unsqueeze(1)).squeeze(1)
        valid = torch.isfinite(total) & (total > 0)
        picks[sort] = torch.where(valid, picked, torch.full_like(picked, INVALID))
    if len(picks) == 1:
        return next(iter(picks.values()))
    mask = torch.tensor(nucleus).to(device, non_blocking=True)
    return torch.where(mask, picks[True], picks[False])
