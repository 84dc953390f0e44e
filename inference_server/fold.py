"""One forward for a decode step and prefill pieces together (a "folded" step).

On one CPU thread every forward pays a pass over all the weights (20-45 ms on the
benchmark model) whatever it computes, so a prompt prefilled in pieces between decode
steps (chunked prefill) paid that pass once per piece on top of the decode steps. Here the
running rows' decode step and the iteration's prefill segments (a piece of a long prompt,
or short prompts whole) go through the model as one packed sequence, as transformers' own
continuous batching does (``generation/continuous_batching``: one batch row, the requests'
tokens one after another, per-token positions, a cache that routes each request's keys):

    input_ids [1, rows + n1 + n2 ...]: each decode row's last token, then each segment's tokens

- ``FoldedStep`` is the forward's cache: the decoder layers hand it the packed keys and
  values (``cache.update``); it writes each decode row's column into the running batch's
  slab cache (``kvcache.SlabLayer``) and each segment's tokens into that segment's own cache
  (slabs sized for its whole prompt), and returns the packed tensors unused.
- The attention (``cpu_attention.decode_attention``, which hands over to ``attend`` when
  the forward carries a step under ``cpu_attention.FOLD_KWARG``) treats each part on its own: the decode rows
  as a batch of one query each against the batch cache with its mask (skipping padding as
  a decode step does), each segment causally against its own cache (earlier pieces and
  itself). Linear layers, norms and the MLP see the packed tokens as one matrix.

Only the engine's plain cases fold: every row and segment on one adapter (peft routes
adapters per batch row, and the packed batch is one row), no sliding window shorter than
the context, slab caches throughout. The engine checks those (``Engine._foldable``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Segment:
    """A prompt's next ``n`` tokens, going on from the ``done`` its cache holds (``cache`` None:
    the first piece; its slabs are made with room for ``total`` tokens)."""

    cache: Any
    done: int
    n: int
    total: int
    layers: list[Any] = field(default_factory=list)  # this forward's slab layers, one per model layer
    mask: Any = None  # [1, 1, n, done + n] causal over its cache; None when done == 0 (SDPA's is_causal)


class FoldedStep:
    """The cache of one folded forward (``update`` routes keys and values) and the layout its
    attention reads (``attend``). ``batch``: the running rows' slab cache; ``decode_mask``:
    their attention mask with this step's column, [rows, 1, 1, width] boolean."""

    def __init__(self, batch: Any, decode_mask: Any, segments: list[Segment]) -> None:
        self.batch = batch
        self.decode_mask = decode_mask
        self.rows = decode_mask.shape[0]
        self.segments = segments
        self.layers: list[Any] = list(batch.layers)  # what transformers may look at; never read for attention
        self._widths = [layer.end - layer.start for layer in batch.layers]
        self._seg_widths = [None if s.cache is None else [layer.end - layer.start for layer in s.cache.layers]
                            for s in segments]
        for s in segments:
            if s.cache is not None:
                s.layers = list(s.cache.layers)
            if s.done:
                import torch

                s.mask = torch.ones((s.n, s.done + s.n), dtype=torch.bool, device=decode_mask.device).tril(s.done)
                s.mask = s.mask[None, None]

    # -- what the model calls --------------------------------------------------------
    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        from .kvcache import SlabLayer

        rows = self.rows
        # [1, heads, rows + n, dim] -> the decode rows' column: [rows, heads, 1, dim]
        self.batch.layers[layer_idx].update(key_states[0, :, :rows].transpose(0, 1).unsqueeze(2),
                                            value_states[0, :, :rows].transpose(0, 1).unsqueeze(2))
        at = rows
        for s in self.segments:
            k, v = key_states[:, :, at:at + s.n], value_states[:, :, at:at + s.n]
            if len(s.layers) <= layer_idx:  # the first piece: slabs with room for the whole prompt
                s.layers.append(SlabLayer(k, v, 1, s.total))
            else:
                s.layers[layer_idx].update(k, v)
            at += s.n
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # positions are always given; nothing else asks

    def attend(self, module, query, **kwargs):
        """[1, heads, rows + n, dim] queries -> [1, rows + n, heads, dim], each part on its own."""
        import torch
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        from .cpu_attention import decode_attention

        layer = self.batch.layers[module.layer_idx]
        rows = self.rows
        kwargs.pop("is_causal", None)
        out, _ = decode_attention(module, query[0, :, :rows].transpose(0, 1).unsqueeze(2), layer.keys, layer.values,
                                  self.decode_mask, **kwargs)  # [rows, 1, heads, dim]
        parts = [out.transpose(0, 1)]
        at = rows
        for s in self.segments:
            seg = s.layers[module.layer_idx]
            part, _ = sdpa_attention_forward(module, query[:, :, at:at + s.n], seg.keys, seg.values, s.mask,
                                             is_causal=s.mask is None, **kwargs)
            parts.append(part)
            at += s.n
        return torch.cat(parts, dim=1), None

    # -- for the engine ----------------------------------------------------------------
    def rewind(self) -> None:
        """Undo what a failed forward wrote: every cache back to the columns it had before."""
        for layer, width in zip(self.batch.layers, self._widths, strict=True):
            layer.end = layer.start + width
            layer._view()
        for s, widths in zip(self.segments, self._seg_widths, strict=True):
            if widths is None:
                s.layers = []
                continue
            for layer, width in zip(s.cache.layers, widths, strict=True):
                layer.end = layer.start + width
                layer._view()

    def segment_cache(self, s: Segment) -> Any:
        """A segment's cache after the forward (a ``DynamicCache`` of its slab layers)."""
        if s.cache is not None:
            return s.cache
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layers = list(s.layers)
        return cache
