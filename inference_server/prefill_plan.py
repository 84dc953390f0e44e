"""Which waiting prompts are prefilled together: a pure plan, no model and no torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# One torch thread, the medium model (benchmarks/engine_breakdown.py): a prompt token costs
# about 3.7 ms of prefill and a forward's fixed part (reading the weights) about 45 ms, so
# padding a prompt by more than this costs more than the separate forward it saves.
CPU_PREFILL_PADDING = 12


def padding_allowed(device_type: str, real_tokens: int) -> int:
    """Pad tokens a prefill may take on to batch one more prompt of ``real_tokens`` in all."""
    if device_type == "cpu":
        return CPU_PREFILL_PADDING
    return max(64, real_tokens // 8)  # a GPU computes padding nearly for free


def prefill_chunks(prompts: Sequence[T], length_of, *, max_tokens: int, device_type: str) -> list[list[T]]:
    """Prefill batches: similar lengths, padded size within ``max_tokens``, shortest first
    (the order that gives the lowest mean time to first token).

    Prefilling arrivals together saves per-call overhead, but a prefill is compute-bound:
    padding is computed like real tokens (on a CPU, prompts of 20 and 400 tokens padded
    together cost nearly twice their sum). So a chunk only takes a prompt while the padding
    it adds costs less than the forward it saves (``padding_allowed``).
    """
    chunks: list[list[T]] = []
    current: list[T] = []
    real = 0
    for prompt in sorted(prompts, key=length_of):
        n = length_of(prompt)
        padded = (len(current) + 1) * n
        if current and (padded > max_tokens or padded - real - n > padding_allowed(device_type, real + n)):
            chunks.append(current)
            current, real = [], 0
        current.append(prompt)
        real += n
    if current:
        chunks.append(current)
    return chunks
