"""Sampling a decode step's next tokens for the whole batch at once: temperature, then top-p,
each row with its own parameters and its own seeded generator.

A row's draw is one uniform number from its generator (``draw``, the only per-row call, and
it leaves the number on the device); the rest is batched: scale, softmax, the top-p nucleus
(rows with a top_p below 1: the most likely tokens in order until their mass reaches top_p),
and a pick by inverse CDF (the first token whose cumulative probability passes the draw).
Every row is computed by the same operations whatever its neighbours, so a seeded request
makes the same text alone or in any batch. The engine reads the tokens back in one transfer
per step (``tokens.tolist()``); a row whose numbers are not a distribution (NaN, inf) comes
back as ``INVALID`` and fails alone.

The nucleus needs the tokens in order of probability. Sorting the whole vocabulary cost 2.2 ms
a row on one CPU thread for Phi-3's 32,064 tokens (17 ms of an 8-row decode step of about 50
ms); the ``NUCLEUS_TOP`` most likely tokens cost 0.05 ms a row, and at a chat's settings they
nearly always hold the nucleus. So on a CPU a row's nucleus comes from its top tokens, and
only a row whose top tokens hold less than its top_p is sorted whole (a CPU reads that back
for free; a GPU sorts every row, which costs it nothing like a host sync would). Both give the
same token for the same draw: the top tokens are the sorted vocabulary's first ones.
"""

from __future__ import annotations

from typing import Any

# Below this a temperature samples greedily, as in vLLM (_SAMPLING_EPS): dividing logits by
# e.g. 2e-38 overflows float32 to inf and softmax then yields NaN.
GREEDY_BELOW_TEMPERATURE = 1e-5
INVALID = -1  # the token of a row whose probabilities were not finite
NUCLEUS_TOP = 64  # tokens a CPU takes the nucleus from before sorting a row's whole vocabulary


def draw(generator: Any, device: Any):
    """One uniform number in [0, 1) from a row's generator, left on ``device`` (no sync)."""
    import torch

    return torch.rand(1, generator=generator, device=device)


def sample_rows(logits, temperatures: list[float], top_ps: list[float], uniforms):
    """Tokens for the rows of ``logits`` [rows, vocab] (float), with each row's temperature,
    top_p and uniform draw (``uniforms``: a tensor of [rows]); a tensor of [rows] on the
    device. The per-row settings go to the device in one copy and nothing here waits for it
    (on a GPU; a CPU checks which rows' nucleus its top tokens hold)."""
    import torch

    device = logits.device
    settings = torch.tensor([temperatures, top_ps], dtype=logits.dtype).to(device, non_blocking=True)
    probs = torch.softmax(logits / settings[0].unsqueeze(1), dim=-1)
    # Each row takes one path by its own top_p, never by its neighbours': rows with a top_p
    # below 1 pick from their nucleus, the others from the vocabulary as it stands.
    nucleus = [p < 1.0 for p in top_ps]
    picks = {}
    if not all(nucleus):
        picks[False] = _pick(probs, uniforms)
    if any(nucleus):
        top_p = settings[1].unsqueeze(1)
        k = min(NUCLEUS_TOP, probs.shape[1])
        if device.type == "cpu" and k < probs.shape[1]:
            top, order = torch.topk(probs, k, dim=-1)
            short = (top.cumsum(dim=-1)[:, -1:] < top_p).squeeze(1) & torch.tensor(nucleus)
            picked = _pick_nucleus(top, order, top_p, uniforms)
            if bool(short.any()):  # these rows' nucleus goes past their top tokens: sort them whole
                rows = short.nonzero().squeeze(1)
                whole, whole_order = torch.sort(probs.index_select(0, rows), dim=-1, descending=True)
                picked = picked.index_copy(0, rows, _pick_nucleus(
                    whole, whole_order, top_p.index_select(0, rows), uniforms.index_select(0, rows)))
        else:
            top, order = torch.sort(probs, dim=-1, descending=True)
            picked = _pick_nucleus(top, order, top_p, uniforms)
        picks[True] = picked
    if len(picks) == 1:
        return next(iter(picks.values()))
    mask = torch.tensor(nucleus).to(device, non_blocking=True)
    return torch.where(mask, picks[True], picks[False])


def _pick_nucleus(top, order, top_p, uniforms):
    """The pick among the most likely tokens ``top`` [rows, k] (probabilities, descending;
    ``order``: their token ids) cut to each row's nucleus."""
    # Drop a token once the mass before it reaches top_p. The top one always stays: a top_p
    # below float32's resolution (1e-300 rounds to 0) would otherwise cut it too.
    cut = top.cumsum(dim=-1) - top >= top_p
    cut[:, 0] = False
    picked = _pick(top.masked_fill(cut, 0.0), uniforms)
    return order.gather(1, picked.clamp(min=0).unsqueeze(1)).squeeze(1).masked_fill(picked == INVALID, INVALID)


def _pick(probs, uniforms):
    """By inverse CDF: the first token whose cumulative probability passes the row's draw,
    never one of probability 0 (its cumulative value equals the one before it); ``INVALID``
    where the row's numbers are not a distribution."""
    import torch

    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1]
    picked = torch.searchsorted(cdf, (uniforms * total).unsqueeze(1), right=True).squeeze(1)
    picked = picked.clamp(max=cdf.shape[1] - 1)
    valid = torch.isfinite(total) & (total > 0)
    return torch.where(valid, picked, torch.full_like(picked, INVALID))
