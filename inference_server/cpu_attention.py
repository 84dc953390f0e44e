"""Batched decode attention on a CPU that skips the padding of the batch's KV cache.

The running batch keeps every row's keys and values right-aligned in one cache
(``kvcache.py``), so a row with a shorter context is padded on the left; the attention mask
hides those cells, but torch's SDPA still reads them. On one CPU thread a decode step's
attention is memory-bound: in the realistic benchmark 26-38 % of the cells an 8-row step
read were padding. Here a decode step (one new token per row) attends each row over its own
cells only; every other call (prefill, one row, little padding, a mask of another shape) is
transformers' own SDPA unchanged. A forward that folds a decode step and prefill pieces
together (``fold.py``) carries its layout down to here, and each part is attended on its own.

Registered with transformers as the attention implementation ``aitk_cpu_sdpa`` (its masks
are SDPA's); ``use_for(model)`` switches a loaded model to it.
"""

from __future__ import annotations

from typing import Any

NAME = "aitk_cpu_sdpa"
FOLD_KWARG = "aitk_fold"  # the keyword a folded forward (fold.py) carries its layout down with
MIN_PADDING = 0.1  # below this share of padded cells one batched call is as fast


# Each row's unpadded cells, worked out once per decode step: every layer of a forward gets the
# same mask object (about 0.1 ms a layer saved). transformers builds a new mask for every forward
# and never changes one in place. One tuple, replaced whole, so engines in other threads never
# read a mask with another's spans.
_last: tuple[Any, list[tuple[int, int]] | None] = (None, None)


def _row_spans(mask) -> list[tuple[int, int]] | None:
    """(start, end) of each row's visible cells, or None where one batched call is better:
    little padding, or a row whose visible cells are not one run."""
    global _last
    cached_mask, cached_spans = _last
    if mask is cached_mask:
        return cached_spans
    rows = mask[:, 0, -1, :]
    width = rows.shape[-1]
    count = rows.sum(dim=-1)
    first = rows.to(dtype=count.dtype).argmax(dim=-1)
    last = width - 1 - rows.flip(-1).to(dtype=count.dtype).argmax(dim=-1)
    spans = None
    if bool(((last - first + 1) == count).all()) and bool((count > 0).all()):
        padding = 1.0 - float(count.sum()) / (rows.shape[0] * width)
        if padding >= MIN_PADDING:
            spans = list(zip(first.tolist(), (last + 1).tolist(), strict=True))
    _last = (mask, spans)
    return spans


def decode_attention(module, query, key, value, attention_mask, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    folded = kwargs.pop(FOLD_KWARG, None)
    if folded is not None:  # a decode step and prefill pieces in one forward (fold.py)
        return folded.attend(module, query, **kwargs)
    if (query.shape[2] != 1 or query.shape[0] < 2 or attention_mask is None or attention_mask.dim() != 4
            or attention_mask.dtype != torch.bool or query.device.type != "cpu"
            or attention_mask.shape[:2] != (query.shape[0], 1)):  # one mask row per batch row, shared by heads
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    spans = _row_spans(attention_mask)
    if spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)  # one query per row: nothing to be causal about
    outs = [sdpa_attention_forward(module, query[i:i + 1], key[i:i + 1, :, start:end], value[i:i + 1, :, start:end],
                                   None, is_causal=False, **kwargs)[0]
            for i, (start, end) in enumerate(spans)]
    return torch.cat(outs, dim=0), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_for(model: Any) -> bool:
    """Switch ``model`` (a transformers model, or a peft model around one) from SDPA to this;
    False (nothing changed) when it does not use SDPA."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(core.config, "_attn_implementation", None) != "sdpa":
        return False
    register()
    core.set_attn_implementation(NAME)
    return True


def stop_using(model: Any) -> None:
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(core.config, "_attn_implementation", None) == NAME:
        core.set_attn_implementation("sdpa")
