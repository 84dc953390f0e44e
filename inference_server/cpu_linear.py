"""Batched decode on a CPU: small-batch matmuls through oneDNN, with weights packed once.

A decode step multiplies every linear layer's weight by a handful of rows (one per running
request). torch sends ``nn.Linear`` on a CPU to MKL: one row goes to a matrix-vector
kernel that streams the weight at memory speed, but 2-32 rows go to ``sgemm``, which
repacks the whole weight on every call and, on the AMD EPYC these figures come from, runs
far below the core's peak. An 8-row step then cost 3.1x a one-row step (143 vs 46 ms on
the benchmark's hidden-1024 model), so batching saved little.

oneDNN's linear with the weight reordered once at load time
(``torch.ops.mkldnn._reorder_linear_weight``, as torch's own inductor does for CPU) does
2-32 rows 1.5-2.3x faster per layer, and the 8-row step falls to 98 ms. Measured by
``python benchmarks/engine_breakdown.py`` (with and without packing); the figures are in
``inference_server/README.md``.

- One row and inputs over 128 rows keep torch's own path (one row: as fast; a folded
  decode step with a prefill piece, up to 72 rows, gains the most: ``MAX_PACKED_ROWS``).
- The packed copy costs memory: as much again as the linear weights. ``auto`` packs only
  float32 weights on a CPU, when the copy fits in a quarter of the machine's memory;
  ``--cpu-packed on|off`` (``AITK_CPU_PACKED``) decides explicitly.
- LoRA layers are left as they are; their base layer (unmerged adapters) is packed.
- Results agree with ``F.linear`` to float32 rounding (a different summation order).
- Two rows go to oneDNN as three (the first repeated, its copy dropped): its 2-row kernel was
  slower than its 3-row one on wide layers (one thread, median of 40: the 16,384 x 1,024
  gate/up projection 5.98 against 4.30 ms, a 32,064-token head 12.75 against 8.58 ms), and a
  2-row decode step of the benchmark model cost 50-55 ms against 40 ms for 3 rows.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# Above: prompt-sized, torch's own path. A decode step with prefill folded into its forward
# (fold.py) is rows + piece: 8 rows and a 32-token piece are 40, a whole prompt of up to 64
# tokens beside 8 rows 72. The linear layers of the benchmark model (hidden 1024, 8 layers;
# one thread, median of 15, load 1.0-1.3), F.linear against oneDNN packed, by input rows:
# 8: 48.8 / 19.5 ms; 32: 97.7 / 66.7; 40: 112.9 / 76.5; 64: 158.4 / 124.4; 128: 285.5 / 241.2;
# 256: 548 / 468; 512: 1074 / 940. So a folded step of 40 rows on torch's path (113 ms) cost
# more than the 32-token piece and the 8-row step apart (67 + 20 ms): 128 keeps folded steps
# on oneDNN. (Larger prefills would gain 13-15 % too; not changed here.)
MAX_PACKED_ROWS = 128
MEMORY_SHARE = 0.25  # ``auto``: the packed copies may take this share of physical memory
PackMode = Literal["auto", "on", "off"]
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v2, v1


@dataclass(frozen=True)
class PackReport:
    layers: int  # linear layers now packed
    extra_bytes: int  # memory the packed copies take
    reason: str  # why nothing was packed ("" when something was)


def _physical_memory() -> int:
    """The machine's memory, or the container's limit when that is lower (cgroup v2 or v1)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    for limit_file in CGROUP_LIMITS:
        try:
            limit = int(Path(limit_file).read_text(encoding="ascii").strip())  # "max": no limit (ValueError)
        except (OSError, ValueError):
            continue
        if 0 < limit < memory or not memory:
            memory = limit
        break
    return memory


def _packable(model: Any) -> list[tuple[str, Any]]:
    import torch.nn as nn

    return [
        (name, module) for name, module in model.named_modules()
        # Exactly nn.Linear: subclasses (peft's LoRA layers, quantized linears) do their own work.
        # LoRA's A and B are tiny and run through peft's own code.
        if type(module) is nn.Linear and ".lora_" not in f".{name}"
    ]


def pack_linears(model: Any, mode: PackMode = "auto", *, memory: int | None = None) -> PackReport:
    """Give every plain ``nn.Linear`` of ``model`` a packed weight for 2-128-row inputs, in place.

    Call after adapters are merged: a packed copy does not follow later changes to the weight."""
    import torch

    if mode == "off":
        return PackReport(0, 0, "off")
    layers = _packable(model)
    if not layers:
        return PackReport(0, 0, "no plain linear layers")
    weights = [m.weight for _, m in layers]
    if any(w.device.type != "cpu" for w in weights):
        return PackReport(0, 0, "not on a CPU")
    if any(w.dtype != torch.float32 for w in weights):
        return PackReport(0, 0, "weights are not float32")
    if not torch.backends.mkldnn.is_available():
        return PackReport(0, 0, "this torch has no oneDNN")
    extra = sum(w.numel() * w.element_size() for w in weights)
    memory = _physical_memory() if memory is None else memory
    if mode == "auto" and extra > MEMORY_SHARE * memory:
        return PackReport(0, 0, f"the packed copy ({extra >> 20} MB) would take over a quarter of memory")
    packed = []
    try:
        with torch.inference_mode():
            for _, module in layers:
                packed.append(torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 8))
    except Exception as exc:  # an op this torch build lacks: keep torch's own path everywhere
        return PackReport(0, 0, f"oneDNN could not pack the weights ({type(exc).__name__}: {exc})")
    for (_, module), weight in zip(layers, packed, strict=True):
        module._aitk_packed = weight
        module.__class__ = packed_class()
    return PackReport(len(layers), extra, "")


def unpack_linears(model: Any) -> None:
    """Undo ``pack_linears`` (before changing weights in place, e.g. merging an adapter)."""
    import torch.nn as nn

    for module in model.modules():
        if type(module) is packed_class():
            module.__class__ = nn.Linear
            del module._aitk_packed


@functools.cache
def packed_class():
    """``PackedLinear``, built on first use so that importing this module does not import torch."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class PackedLinear(nn.Linear):
        """``nn.Linear`` that sends 2-``MAX_PACKED_ROWS``-row inputs to oneDNN with its weight packed once."""

        _aitk_packed: Any

        def forward(self, x):
            rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
            if 2 <= rows <= MAX_PACKED_ROWS and x.dtype == torch.float32 and not torch.is_grad_enabled():
                if rows == 2:  # oneDNN's 2-row kernel is slower than its 3-row one on wide layers
                    flat = x.reshape(2, x.shape[-1])
                    out = torch.ops.mkldnn._linear_pointwise(torch.cat([flat, flat[:1]]), self._aitk_packed,
                                                             self.bias, "none", [], "")
                    return out[:2].reshape(*x.shape[:-1], out.shape[-1])
                return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self._aitk_packed, self.bias,
                                                          "none", [], "")
            return F.linear(x, self.weight, self.bias)

    return PackedLinear


def describe(report: PackReport) -> str:
    if report.layers:
        return f"{report.layers} linear layers packed for batched decode ({report.extra_bytes >> 20} MB)"
    return f"linear layers not packed: {report.reason}"
