"""Full garbage collections wait while an answer streams.

Measured under benchmarks/tui_bench.py (issue 10): most event-loop stalls over 100 ms while
an answer streamed were CPython's full (generation 2) collections, not drawing. A full
collection walks every tracked object (100-200k in the app: modules, CSS, widgets, strips
and their caches): 120-250 ms on this machine. The widgets a stream makes and drops
within a frame or two outlive the young collections, so a full one came every ~0.5 s.

So, as Textual does for smooth scrolling (``App.PAUSE_GC_ON_SCROLL``), only less bluntly:
while any answer streams, full collections wait and the young ones still run (they take
most of the garbage, which dies within a frame). What the app held before its first
answer (modules, CSS, the other tabs: long-lived) is frozen once (``gc.freeze``), so no full
collection walks it again. The last stream to end runs the one full collection, after its
answer's last frame.
"""

from __future__ import annotations

import gc

_NEVER = 2**31 - 1  # a generation-2 threshold no count reaches


class _State:
    holders = 0
    saved: tuple[int, ...] | None = None
    frozen = False


def hold() -> GCHold:
    """Full collections wait until the returned hold (and every other) is released."""
    if _State.holders == 0:
        if not _State.frozen:
            _State.frozen = True
            gc.freeze()
        _State.saved = gc.get_threshold()
        gc.set_threshold(_State.saved[0], _State.saved[1], _NEVER)
    _State.holders += 1
    return GCHold()


class GCHold:
    def __init__(self) -> None:
        self.held = True

    def release(self, collect: bool = True) -> None:
        """Idempotent; the last release restores the thresholds and (``collect``) collects now,
        at a moment the caller chose, rather than at the next allocation that tips the count."""
        if not self.held:
            return
        self.held = False
        _State.holders -= 1
        if _State.holders == 0 and _State.saved is not None:
            gc.set_threshold(*_State.saved)
            _State.saved = None
            if collect:
                gc.collect()


def holders() -> int:
    """Streams holding full collections back (tests)."""
    return _State.holders
