"""Generation (no HTTP): continuous batching over a hand-written decode loop.

One worker thread owns the model. At every iteration it admits waiting requests, prefills
(shortest first; prompts of similar length together, and each prefill's first tokens go
out at once), then runs one decode step for every active row, and drops rows that
finished, were cancelled or ran out of time. Woken from idle, it first lets a burst's
other arrivals come in (``_gather``), so they start in one iteration.

Chunked prefill: a prompt longer than two ``prefill_chunk`` pieces is prefilled one piece
per iteration, on top of the cache the earlier pieces left (slabs sized for the whole
prompt at the first piece), with the running rows' decode step in between; its last piece
samples its first token and the row joins the batch. So a long prompt holds running
streams, and a short request that arrives behind it, for one piece at a time, not for its
whole prefill. Only the last piece computes logits (the others skip the lm_head).

Folded steps (``fold.py``): while rows decode, a prefill (a piece, or short prompts whole)
goes in the same forward as the decode step that follows it, one packed row of the rows'
tokens and the prompt's, so it does not pay a pass over the weights of its own. Where that
is not safe (rows or prompts on different unmerged adapters, a sliding window, an attention
that is not ours) or the folded forward raises, the prefill and the decode step run apart,
each with its own failure isolation. Traced as "mixed" (rows: decode rows; tokens: prompt
tokens).

Rows join and leave the running batch between steps: the batch's KV cache is left-padded
to a common length and an attention mask hides the padding, with explicit per-row
position ids, so a row computes what it would compute alone. The cache lives in
preallocated slabs (``kvcache``): a step writes in place rather than copying every row's
cache as ``DynamicCache`` does.

Every row names the adapter it runs with (None: the weights as loaded). With unmerged
adapters (several, or the base served too) all rows still share one batch and one cache:
peft's per-row ``adapter_names`` applies each row's LoRA inside one forward. Measured on a
Phi-3-shaped model (hidden 1024, 8 layers, one thread, 8 rows of base + 2 adapters), one
mixed forward took 0.5-0.7x the time of one forward per adapter group
(benchmarks/adapter_batching_bench.py).

Where the time goes (``benchmarks/engine_breakdown.py`` traces every step through
``Engine.trace``): on one CPU thread a prefill costs in proportion to its prompt tokens
and cannot be batched away, and a wave of staggered clients ends with its longest answer
decoding alone. On the realistic workload the engine's CPU time comes within a few
percent of the bound that script prints for any engine, and that bound is below 3x.

Sampling draws the whole batch at once (``sampling.sample_rows``) and every step reads its
tokens back in one transfer (a CPU also checks which rows' nucleus needs a full sort). Results go back to asyncio through
``loop.call_soon_threadsafe`` once per step, with each request's text decoded
incrementally (``tokenizers.decoders.DecodeStream``) and partial stop strings held back
until they are ruled out (``textstream``).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .handles import Finished, QueueFull, RequestHandle, SamplingParams, TextChunk, failure_message
from .loading import LoadedModel, drop_leaked_adapter_hooks
from .prefill_plan import prefill_chunks
from .sampling import GREEDY_BELOW_TEMPERATURE, INVALID, draw, sample_rows
from .textstream import Detokenizer, StopMatcher

log = logging.getLogger("inference_server.engine")

# Prompt tokens prefilled between two decode steps (``--prefill-chunk``), by device. Measured
# on one CPU thread (the benchmarks' hidden-1024 x 8-layer model, a 1,024-token prompt alone;
# README): whole 2.8 s; pieces of 256 tokens 3.1 s (+12 %), 128 3.4 s (+21 %), 64 3.6 s
# (+29 %), 32 4.4 s (+57 %), 16 6.1 s. A piece of 32 costs 140-180 ms, about two 4-row decode
# steps, so running streams' worst gap stays near 3x their usual one; 64 would make it 4-5x.
# With no row decoding, pieces are ALONE_FACTOR times larger: 256 tokens on a CPU (+12 %;
# a newcomer waits for one piece at most, under 1 s here), and a lone chat prompt under 512
# tokens is prefilled whole, so a single stream pays nothing. A GPU prefills hundreds of
# tokens in the time of a decode step (not measured here).
CPU_PREFILL_CHUNK = 32
GPU_PREFILL_CHUNK = 512
ALONE_FACTOR = 8
# A prompt of up to WHOLE_FACTOR pieces is prefilled whole (with the other arrivals of its
# length): a chat turn of 40 tokens in two forwards would cost a second pass over the weights.
WHOLE_FACTOR = 2
# An idle engine that wakes for an arrival waits until arrivals pause for GATHER_QUIET_S (at
# most GATHER_MAX_S in all), so a burst's requests start in one iteration: over HTTP, 8
# clients sending at once reach the engine 1-11 ms apart, and before, the first went into a
# prefill and a decode step of its own (110 ms on the benchmark model) while the other 7
# waited, then trickled in over two more prefills. A lone request pays the quiet period once.
GATHER_QUIET_S = 0.008
GATHER_MAX_S = 0.040


def default_prefill_chunk(device_type: str) -> int:
    return CPU_PREFILL_CHUNK if device_type == "cpu" else GPU_PREFILL_CHUNK



@dataclass(eq=False)
class _Row:
    handle: RequestHandle
    detok: Detokenizer
    stopper: StopMatcher
    generator: Any
    position: int = 0  # where the next fed token goes (= tokens in this row's cache)
    last_token: int = 0
    generated: int = 0
    first_token_at: float | None = None
    done: bool = False
    reason: str = ""
    tokens: list[int] = field(default_factory=list)  # generated so far
    shown: bool = False  # some text went out (a first token may be no text yet: partial UTF-8)


@dataclass(eq=False)
class _Prefill:
    """An admitted prompt not yet in the batch: prefilled whole, or in pieces (chunked prefill)."""

    handle: RequestHandle
    done: int = 0  # prompt tokens already in ``cache``
    cache: Any = None  # the pieces done so far (slab layers with room for the whole prompt)
    next: int = 0  # tokens of this iteration's piece
    cached: int = 0  # prompt tokens a finished request's cache gave (``_from_store``)

    @property
    def remaining(self) -> int:
        return len(self.handle.prompt_ids) - self.done


@dataclass(eq=False)
class _Group:
    """Rows decoded together (each with its own adapter) and their shared, left-padded KV cache."""

    rows: list[_Row] = field(default_factory=list)
    cache: Any = None
    mask: Any = None  # [rows, cache length] 1 = real token, 0 = left padding

    @property
    def adapters(self) -> list[str | None]:
        return [row.handle.adapter for row in self.rows]


# --------------------------------------------------------------------------- engine
class Engine:
    def __init__(self, loaded: LoadedModel, *, max_batch_size: int = 8, max_queue: int = 64,
                 max_prefill_tokens: int = 4096, metrics: Any = None, min_step_interval: float = 0.0,
                 prefill_chunk: int | None = None, prefix_cache_tokens: int | None = None,
                 gather_s: tuple[float, float] = (GATHER_QUIET_S, GATHER_MAX_S), fold: bool = True):
        from .kvcache import PrefixStore

        self.loaded = loaded
        # Finished requests' caches, for a later prompt that starts the same (a chat's next turn).
        self.prefix_store = PrefixStore(loaded.context_len if prefix_cache_tokens is None else prefix_cache_tokens)
        # Prompt tokens prefilled between two decode steps; a longer prompt goes in pieces.
        self.prefill_chunk = prefill_chunk or default_prefill_chunk(loaded.device.type)
        # Prefill goes in the running rows' decode forward where it can (``fold.py``); False:
        # always a forward of its own (tests and benchmarks compare the two).
        self.fold = fold and self._can_fold()
        self.min_step_interval = min_step_interval
        self.gather_s = gather_s  # (quiet, at most): how an idle engine waits for a burst's other arrivals
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_prefill_tokens = max_prefill_tokens
        self.metrics = metrics
        self._cv = threading.Condition()
        self._waiting: deque[RequestHandle] = deque()
        self._prefilling: list[_Prefill] = []  # admitted, not decoding yet (shortest first each iteration)
        self._batch = _Group()
        self._active = 0
        self._stopping = False
        self._outbox: list[tuple[RequestHandle, TextChunk | Finished]] = []
        self._recent_s: deque[float] = deque(maxlen=32)  # request durations, for Retry-After
        self.peak_batch = 0  # most rows decoded in one step so far (tests and benchmarks read it)
        self.peak_prefill = 0  # most requests prefilled in one forward so far
        # Called after each prefill and decode step (benchmarks/engine_breakdown.py sets it):
        # trace(kind, wall_s, cpu_s, rows, real_tokens, padded_tokens); None costs nothing.
        self.trace: Any = None
        self._thread = threading.Thread(target=self._run, name="aitk-engine", daemon=True)

    # -- event-loop side ---------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return self._active

    def start(self) -> None:
        self._warm_up()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, prompt_ids: list[int], params: SamplingParams, *, use_adapter: bool | str | None,
               timeout_s: float) -> RequestHandle:
        """Queue a request (call from the event loop); QueueFull when the queue is full."""
        handle = RequestHandle(prompt_ids, params, self._adapter_name(use_adapter), time.monotonic() + timeout_s)
        with self._cv:
            if self._stopping:
                raise RuntimeError("the engine is shutting down")
            free_slots = max(0, self.max_batch_size - self._active)
            if len(self._waiting) >= self.max_queue + free_slots:
                raise QueueFull(len(self._waiting), self._retry_after())
            self._waiting.append(handle)
            self._cv.notify()
        return handle

    def _adapter_name(self, use_adapter: bool | str | None) -> str | None:
        """``use_adapter``: a peft adapter name (``LoadedModel.served``'s values), None or
        False for no adapter, True for the first adapter (a single-adapter caller's shorthand)."""
        loaded = self.loaded
        if use_adapter is True:
            return next(iter(loaded.adapters.values())) if loaded.peft_adapters else None
        if not use_adapter:
            return None
        if use_adapter not in loaded.adapters.values() or not loaded.peft_adapters:
            raise ValueError(f"no unmerged adapter called {use_adapter!r} is loaded")
        return use_adapter

    def _retry_after(self) -> int:
        typical = sorted(self._recent_s)[len(self._recent_s) // 2] if self._recent_s else 1.0
        waves = (len(self._waiting) + self.max_batch_size) / self.max_batch_size
        return max(1, min(60, round(typical * waves)))

    # -- worker side -------------------------------------------------------------
    def _warm_up(self) -> None:
        import torch

        # One row per served model, mixed: an adapter peft cannot mix fails the load, not requests.
        adapters = [*self.loaded.served.values()]
        with torch.inference_mode():  # first call pays one-off costs (kernels, allocator)
            self._forward(adapters, torch.zeros((len(adapters), 1), dtype=torch.long, device=self.loaded.device),
                          None, None, None)

    def _forward(self, adapters: list[str | None], input_ids, mask, positions, cache, keep: Any = 1,
                 **extra):
        """One forward; ``adapters`` names each row's adapter (None: the weights as loaded).
        Logits of each row's last token ([rows, vocab]), or with ``keep`` an index tensor, of
        those tokens of the one row ([len(keep), vocab]; empty: no lm_head at all)."""
        model = self.loaded.model
        ctx = contextlib.nullcontext()
        kwargs = {self.loaded.cache_kwarg: cache} if cache is not None else {}
        kwargs.update(extra)
        if self.loaded.peft_adapters:
            first = adapters[0]
            if any(a != first for a in adapters) or (first is not None and first != model.active_adapter):
                kwargs["adapter_names"] = [a or "__base__" for a in adapters]
            elif first is None:  # cheaper than routing every row through "__base__"
                ctx = model.disable_adapter()
        with ctx:
            try:
                out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                            use_cache=cache is not None, logits_to_keep=keep, **kwargs)
            except Exception:
                if "adapter_names" in kwargs:
                    drop_leaked_adapter_hooks(model)
                raise
        return out.logits[:, -1, :].float() if isinstance(keep, int) else out.logits[0].float()

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._stopping and not self._waiting and self._active == 0:
                        self._cv.wait()
                    if self._stopping:
                        break
                    if self._active == 0:
                        self._gather()
                    admitted = self._take_admissible()
                step_started = time.monotonic()
                self._prefilling.extend(self._from_store(handle) for handle in admitted)
                running = bool(self._batch.rows)
                pieces = self._plan_prefill()
                decoded = False
                for i, piece in enumerate(pieces):
                    last = i == len(pieces) - 1
                    if (running or (not last and self._is_part(pieces[i + 1]))) and self._foldable(piece):
                        # The running rows' decode step that follows this prefill anyway, in the
                        # same forward. (Rows that all joined in this iteration wait for the last
                        # prefill and decode with its rows, as before: a burst stays in step.)
                        self._fold_guarded(piece)
                        self._flush()
                        decoded = last
                        continue
                    self._run_piece(piece)
                    self._flush()  # first tokens go out now, not after a decode step or other prefills
                    if not last and (running or self._is_part(pieces[i + 1]) or not all(
                            row.shown for row in self._batch.rows)):
                        # Running rows advance between prefills, and so do rows just prefilled
                        # whose first token was no text yet (a partial UTF-8 sequence). Rows that
                        # all joined in this iteration and showed their first text can wait for
                        # the other arrivals' first tokens (a burst: one decode step less each).
                        self._decode_guarded()
                        self._flush()
                if not decoded:
                    self._decode_guarded()
                    self._flush()
                if self.min_step_interval > 0:  # a demo pace, never a limit on real models
                    time.sleep(max(0.0, step_started + self.min_step_interval - time.monotonic()))
        self._fail_all("the server is shutting down", include_waiting=True)
        self._flush()

    def _gather(self) -> None:
        """Idle, woken by an arrival (``_cv`` held): wait while more keep coming (a burst), until
        ``gather_s[0]`` passes without one, ``gather_s[1]`` in all, or the batch would be full."""
        quiet, most = self.gather_s
        if quiet <= 0:
            return
        end = time.monotonic() + most
        seen = len(self._waiting)
        while not self._stopping and seen < self.max_batch_size:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._cv.wait(min(quiet, left))
            if len(self._waiting) == seen:
                return
            seen = len(self._waiting)

    @staticmethod
    def _is_part(group: list[_Prefill]) -> bool:
        """A piece of a prompt prefilled in pieces (not whole prompts)."""
        return len(group) == 1 and (group[0].done > 0 or group[0].next < group[0].remaining)

    def _plan_prefill(self) -> list[list[_Prefill]]:
        """This iteration's prefill forwards (chunked prefill): every waiting prompt of at most
        ``WHOLE_FACTOR * prefill_chunk`` tokens whole, grouped by similar length
        (``prefill_chunks``), then one piece of at most ``prefill_chunk`` tokens of one longer
        prompt (a forward of its own, going on from the cache its earlier pieces left). So a
        long prompt never holds the running rows' next decode step, or a short arrival's first
        token, for more than one piece; shortest first (the lowest mean time to first token)."""
        now = time.monotonic()
        live: list[_Prefill] = []
        for p in self._prefilling:
            handle = p.handle
            if handle.cancelled:
                self._end_prefill(p, Finished("cancelled", len(handle.prompt_ids), 0))
            elif now >= handle.deadline:
                self._end_prefill(p, Finished("length", len(handle.prompt_ids), 0, timed_out=True))
            else:
                live.append(p)
        self._prefilling = live
        # With no row decoding nobody's next token waits; a newcomer still waits for one piece at most.
        chunk = self.prefill_chunk if self._batch.rows else self.prefill_chunk * ALONE_FACTOR
        whole = [p for p in live if p.done == 0 and p.remaining <= WHOLE_FACTOR * chunk]
        longer = [p for p in live if p not in whole]
        plan = prefill_chunks(whole, lambda p: p.remaining, max_tokens=self.max_prefill_tokens,
                              device_type=self.loaded.device.type)
        for p in whole:
            p.next = p.remaining
        if longer:
            piece = min(longer, key=lambda p: p.remaining)
            # Rows that the whole prompts start in this iteration decode after this piece.
            size = self.prefill_chunk if whole else chunk
            # A chat's next turn: what its cached history leaves goes in one piece when a fresh
            # prompt of that length would be prefilled whole (one pass over the weights, not two).
            fits = piece.done == piece.cached and piece.remaining <= WHOLE_FACTOR * size
            piece.next = piece.remaining if fits else min(piece.remaining, size)
            plan.append([piece])
        return plan

    def _run_piece(self, group: list[_Prefill]) -> None:
        for p in group:
            self._prefilling.remove(p)
        handles = [p.handle for p in group]
        try:
            with self._traced("prefill", len(group), sum(p.next for p in group),
                              len(group) * max(p.next for p in group)):
                if self._is_part(group):
                    self._prefill_part(group[0])
                else:
                    self._prefill(handles)
        except Exception as exc:  # a bug outside the per-row guards: fail this piece's requests only
            log.exception("prefill failed")
            for p in group:
                self._end_prefill(p, Finished("error", len(p.handle.prompt_ids), 0, error=failure_message(exc)))

    def _can_fold(self) -> bool:
        """Whether this model's forwards can fold a decode step and prefill pieces together
        (``fold.py``): its attention is ours (it reads the folded layout), and no sliding
        window shorter than the context (the folded attention has no window)."""
        from . import cpu_attention

        model = self.loaded.model
        core = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = core.config
        if getattr(config, "_attn_implementation", None) != cpu_attention.NAME:
            return False
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        window = getattr(text, "sliding_window", None)
        return not window or window >= self.loaded.context_len

    def _foldable(self, group: list[_Prefill]) -> bool:
        """This prefill can go in the decode step's forward: rows are decoding, and every row
        and prompt runs on one adapter (peft picks adapters per batch row; the folded
        forward is one row), with slab caches throughout."""
        from .kvcache import SlabLayer

        batch = self._batch
        if not self.fold or not batch.rows or batch.cache is None:  # self.fold: the model can (at start)
            return False
        adapters = {*batch.adapters, *(p.handle.adapter for p in group)}
        caches = [batch.cache, *(p.cache for p in group if p.cache is not None)]
        return len(adapters) == 1 and all(isinstance(layer, SlabLayer) for c in caches for layer in c.layers)

    def _fold_guarded(self, group: list[_Prefill]) -> None:
        try:
            self._run_folded(group)
        except Exception as exc:  # last resort, as for a decode step: keep serving
            log.exception("a folded step failed")
            self._fail_all(failure_message(exc))

    def _run_folded(self, group: list[_Prefill]) -> None:
        """The running rows' decode step and this prefill (whole prompts, or one piece) in one
        forward (``fold.py``). If it raises, this iteration goes the separate way (the prefill,
        then the decode step, each isolating its own failures)."""
        import torch

        from .cpu_attention import FOLD_KWARG
        from .fold import FoldedStep, Segment

        group_ = self._batch
        rows = list(group_.rows)
        device = self.loaded.device
        self.peak_batch = max(self.peak_batch, len(rows))
        self.peak_prefill = max(self.peak_prefill, len(group))
        tokens = sum(p.next for p in group)
        trace = self.trace
        wall, cpu = time.perf_counter(), time.thread_time()
        width = group_.mask.shape[1]
        mask = torch.cat([group_.mask, group_.mask.new_ones((len(rows), 1))], dim=1)
        segments = [Segment(p.cache, p.done, p.next, len(p.handle.prompt_ids)) for p in group]
        step = None
        try:
            step = FoldedStep(group_.cache, mask.bool()[:, None, None, :], segments)
            ids = [r.last_token for r in rows]
            positions = [r.position for r in rows]
            keep = list(range(len(rows)))
            for p in group:
                ids += p.handle.prompt_ids[p.done:p.done + p.next]
                positions += range(p.done, p.done + p.next)
                if p.next == p.remaining:  # its last token gives the first generated one
                    keep.append(len(ids) - 1)
            logits = self._forward(
                [rows[0].handle.adapter], torch.tensor([ids], device=device),
                torch.ones((1, 1, 1, 1), dtype=torch.bool, device=device),  # 4-D: transformers builds no mask
                torch.tensor([positions], device=device), step, keep=torch.tensor(keep, device=device),
                **{FOLD_KWARG: step})
        except Exception as exc:
            log.warning("a folded step (%d rows, %d prompt tokens) failed (%s); prefilling and decoding apart",
                        len(rows), tokens, type(exc).__name__)
            if step is not None:
                step.rewind()
            group_.mask = group_.mask[:, :width]
            self._run_piece(group)
            self._flush()
            self._decode_guarded()
            return
        group_.mask = mask
        for p in group:
            self._prefilling.remove(p)
        self._advance(group_, logits[:len(rows)])
        at = len(rows)
        for p, s in zip(group, segments, strict=True):
            p.cache, p.done = step.segment_cache(s), p.done + p.next
            if p.remaining:
                self._prefilling.append(p)
                continue
            cache, p.cache = p.cache, None
            try:
                self._start_rows([p.handle], logits[at:at + 1], cache,
                                 torch.ones((1, p.done), dtype=torch.long, device=device))
            except Exception as exc:  # a bug outside the per-row guards: fail this prompt only
                log.exception("starting a prefilled request failed")
                self._end_prefill(p, Finished("error", len(p.handle.prompt_ids), 0, error=failure_message(exc)))
            at += 1
        if trace is not None:
            trace("mixed", time.perf_counter() - wall, time.thread_time() - cpu, len(rows), tokens,
                  len(rows) + tokens)

    def _end_prefill(self, p: _Prefill, done: Finished) -> None:
        if p in self._prefilling:
            self._prefilling.remove(p)
        p.cache = None
        self._active -= 1
        self._outbox.append((p.handle, done))

    def _prefill_part(self, p: _Prefill) -> None:
        """One piece of a prompt prefilled in pieces: its next ``p.next`` tokens, on top of the
        cache its earlier pieces left; the last piece samples the first token and joins the batch."""
        import torch
        from transformers import DynamicCache

        from . import kvcache

        device = self.loaded.device
        handle = p.handle
        start, end = p.done, p.done + p.next
        ids = torch.tensor([handle.prompt_ids[start:end]], device=device)
        positions = torch.arange(start, end, device=device).unsqueeze(0)
        mask = torch.ones((1, end), dtype=torch.long, device=device)
        first = p.cache is None
        cache = DynamicCache() if first else p.cache
        # Only the last piece needs logits (its last token's): the others skip the lm_head.
        keep = 1 if end == len(handle.prompt_ids) else torch.empty(0, dtype=torch.long, device=device)
        try:
            logits = self._forward([handle.adapter], ids, mask, positions, cache, keep=keep)
        except Exception as exc:
            log.exception("prefill failed")
            self._end_prefill(p, Finished("error", len(handle.prompt_ids), 0, error=failure_message(exc)))
            return
        if first:  # room for the whole prompt once, so later pieces write in place
            cache = kvcache.to_slabs(cache, 1, len(handle.prompt_ids))
        p.cache, p.done = cache, end
        if p.remaining:
            self._prefilling.append(p)
            return
        p.cache = None
        self._start_rows([handle], logits, cache, mask)

    def _decode_guarded(self) -> None:
        group = self._batch
        try:
            if group.rows:
                rows, width = len(group.rows), group.mask.shape[1] + 1
                with self._traced("decode", rows, int(group.mask.sum()) + rows if self.trace else 0, rows * width):
                    self._decode_step(group)
        except Exception as exc:  # last resort (rows are failed one by one below): keep serving
            log.exception("generation step failed")
            self._fail_all(failure_message(exc))

    @contextlib.contextmanager
    def _traced(self, kind: str, rows: int, tokens: int, padded: int):
        trace = self.trace
        if trace is None:
            yield
            return
        wall, cpu = time.perf_counter(), time.thread_time()
        yield
        trace(kind, time.perf_counter() - wall, time.thread_time() - cpu, rows, tokens, padded)

    def _take_admissible(self) -> list[RequestHandle]:
        now = time.monotonic()
        kept: deque[RequestHandle] = deque()
        admitted: list[RequestHandle] = []
        for handle in self._waiting:
            if handle.cancelled:
                self._finish_waiting(handle, Finished("cancelled", len(handle.prompt_ids), 0))
            elif now >= handle.deadline:
                self._finish_waiting(handle, Finished(
                    "error", len(handle.prompt_ids), 0, error="timed out waiting for a free slot",
                    timed_out=True, queue_timeout=True))
            elif self._active < self.max_batch_size:
                self._active += 1
                admitted.append(handle)
            else:
                kept.append(handle)
        self._waiting = kept
        return admitted

    def _finish_waiting(self, handle: RequestHandle, done: Finished) -> None:
        self._outbox.append((handle, done))

    def _prefill(self, handles: list[RequestHandle]) -> None:
        import torch
        from transformers import DynamicCache

        device = self.loaded.device
        self.peak_prefill = max(self.peak_prefill, len(handles))
        lengths = [len(h.prompt_ids) for h in handles]
        width = max(lengths)
        pad = self.loaded.pad_id
        ids = torch.tensor([[pad] * (width - n) + h.prompt_ids for h, n in zip(handles, lengths, strict=True)],
                           device=device)
        mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths], dtype=torch.long, device=device)
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)  # as generate() does for left padding
        cache = DynamicCache()
        try:
            logits = self._forward([h.adapter for h in handles], ids, mask, positions, cache)
        except Exception as exc:
            if len(handles) == 1:
                log.exception("prefill failed")
                self._active -= 1
                self._outbox.append((handles[0], Finished("error", lengths[0], 0, error=failure_message(exc))))
                return
            # One prompt may be to blame: prefill each alone so only the culprit fails.
            log.warning("prefill of %d requests together failed (%s); prefilling each alone",
                        len(handles), type(exc).__name__)
            for handle in handles:
                self._prefill([handle])
            return
        self._start_rows(handles, logits, cache, mask)

    def _start_rows(self, handles: list[RequestHandle], logits, cache, mask) -> None:
        """Prefilled prompts become rows: each samples its first token and joins the batch."""
        import torch

        device = self.loaded.device
        rows = []
        for handle in handles:
            n = len(handle.prompt_ids)
            row = _Row(handle, Detokenizer(self.loaded.tokenizer), StopMatcher(handle.params.stop), None, position=n)
            try:
                seed = handle.params.seed if handle.params.seed is not None else secrets.randbits(62)
                row.generator = torch.Generator(device=device).manual_seed(seed)
            except Exception as exc:  # e.g. a seed torch cannot take (the API validates it first)
                self._fail_row(row, exc)
            rows.append(row)
        tokens = self._sample(rows, logits)
        group = self._batch
        self._join(group, rows, cache, mask)
        for row, token in zip(rows, tokens, strict=True):
            self._accept_guarded(row, token)
        self._drop_finished(group)

    def _join(self, group: _Group, rows: list[_Row], cache, mask) -> None:
        import torch
        import torch.nn.functional as F

        from . import kvcache  # imports transformers: not at module import (the app loads it later)

        if not group.rows:
            group.rows, group.cache, group.mask = list(rows), kvcache.to_slabs(cache, self.max_batch_size), mask
            return
        width, n = group.mask.shape[1], mask.shape[1]
        total = max(width, n)
        kvcache.join(group.cache, cache)  # left-pads the shorter side; the mask hides the pads
        group.mask = torch.cat([F.pad(group.mask, (total - width, 0)), F.pad(mask, (total - n, 0))])
        group.rows.extend(rows)

    def _decode_step(self, group: _Group) -> None:
        import torch

        device = self.loaded.device
        rows = group.rows
        self.peak_batch = max(self.peak_batch, len(rows))
        ids = torch.tensor([[r.last_token] for r in rows], device=device)
        positions = torch.tensor([[r.position] for r in rows], device=device)
        width = group.mask.shape[1]
        group.mask = torch.cat([group.mask, group.mask.new_ones((len(rows), 1))], dim=1)
        try:
            logits = self._forward(group.adapters, ids, group.mask, positions, group.cache)
        except Exception as exc:
            logits = self._forward_each(group, ids, positions, width, exc)
        self._advance(group, logits)

    def _advance(self, group: _Group, logits) -> None:
        """A decode step's logits (one row each): every row samples its token and moves on."""
        rows = group.rows
        for row, token in zip(rows, self._sample(rows, logits), strict=True):
            if row.done:  # failed in this step; _drop_finished removes it
                continue
            row.position += 1
            self._accept_guarded(row, token)
        self._drop_finished(group)

    def _forward_each(self, group: _Group, ids, positions, width: int, exc: Exception):
        """The batched step raised: run it again row by row, so only the row(s) that fail alone
        are failed and the others go on exactly as they would have (a row computes what it
        would compute alone). Rebuilds the group's cache; failed rows get zeros until dropped."""
        import torch
        from transformers import DynamicCache

        from . import kvcache

        log.warning("a decode step of %d rows failed (%s); running each row alone", len(group.rows),
                    type(exc).__name__)
        # A layer may already hold this step's column when the failure came later: cut it off.
        before = [(layer.keys[..., :width, :], layer.values[..., :width, :]) for layer in group.cache.layers]
        logits, parts = [], []
        for i, row in enumerate(group.rows):
            cache = DynamicCache([(k[i:i + 1], v[i:i + 1]) for k, v in before])
            try:
                logits.append(self._forward([row.handle.adapter], ids[i:i + 1], group.mask[i:i + 1],
                                            positions[i:i + 1], cache))
                parts.append([(layer.keys, layer.values) for layer in cache.layers])
            except Exception as row_exc:
                self._fail_row(row, row_exc)
                logits.append(None)
                parts.append(None)
        shapes = next((p for p in parts if p is not None), None)
        if shapes is None:  # every row failed alone: nothing is left to decode
            return torch.zeros((len(group.rows), 1), device=ids.device)
        template = next(x for x in logits if x is not None)
        logits = torch.cat([x if x is not None else torch.zeros_like(template) for x in logits])
        group.cache = kvcache.to_slabs(DynamicCache([
            (torch.cat([p[j][0] if p is not None else torch.zeros_like(shapes[j][0]) for p in parts]),
             torch.cat([p[j][1] if p is not None else torch.zeros_like(shapes[j][1]) for p in parts]))
            for j in range(len(shapes))]), self.max_batch_size)
        return logits

    def _sample(self, rows: list[_Row], logits) -> list[int]:
        """The step's tokens, read back in one transfer: greedy rows take the argmax, sampled
        rows are drawn together (``sampling.sample_rows``), each from its own generator."""
        import torch

        tokens = logits.argmax(dim=-1)
        sampled, uniforms = [], []
        for i, row in enumerate(rows):
            if row.done or row.handle.params.temperature < GREEDY_BELOW_TEMPERATURE:
                continue
            try:
                uniforms.append(draw(row.generator, logits.device))
                sampled.append(i)
            except Exception as exc:  # this row's generator (or a bug hit by it) fails this row only
                self._fail_row(row, exc)
        if sampled:
            every = len(sampled) == len(rows)  # the usual case at a chat's defaults: no gather
            idx = None if every else torch.tensor(sampled).to(logits.device, non_blocking=True)
            params = [rows[i].handle.params for i in sampled]
            try:
                picked = sample_rows(logits if every else logits.index_select(0, idx),
                                     [p.temperature for p in params], [p.top_p for p in params], torch.cat(uniforms))
            except Exception as exc:  # one row's numbers may be to blame: each row alone
                log.warning("sampling %d rows together failed (%s); sampling each alone", len(sampled),
                            type(exc).__name__)
                picked = torch.cat([self._sample_alone(rows[i], logits[i:i + 1], u) for i, u in zip(
                    sampled, uniforms, strict=True)])
            tokens = picked if every else tokens.index_copy(0, idx, picked)
        out = tokens.tolist()
        for i in sampled:
            if out[i] == INVALID and not rows[i].done:
                self._fail_row(rows[i], ValueError("the next-token probabilities are not finite"))
        return out

    def _sample_alone(self, row: _Row, logits, uniform):
        import torch

        try:
            return sample_rows(logits, [row.handle.params.temperature], [row.handle.params.top_p], uniform)
        except Exception as exc:
            self._fail_row(row, exc)
            return torch.full((1,), INVALID, dtype=torch.long, device=logits.device)

    def _fail_row(self, row: _Row, exc: Exception) -> None:
        log.error("generation failed for one request (the others go on)", exc_info=exc)
        if not row.done:
            self._finish(row, "error", error=failure_message(exc))

    def _accept_guarded(self, row: _Row, token: int) -> None:
        if row.done:  # failed earlier in this step
            return
        try:
            self._accept(row, token)
        except Exception as exc:  # e.g. detokenizing this row's token: fail this row only
            self._fail_row(row, exc)

    def _accept(self, row: _Row, token: int) -> None:
        handle, params = row.handle, row.handle.params
        row.generated += 1
        row.tokens.append(token)
        row.last_token = token
        now = time.monotonic()
        if row.first_token_at is None:
            row.first_token_at = now
            if self.metrics is not None:
                self.metrics.observe_ttft(now - handle.submitted)
        if handle.cancelled:
            return self._finish(row, "cancelled")
        if token in self.loaded.eos_ids and not params.ignore_eos:
            return self._finish(row, "stop")
        text, hit_stop = row.stopper.push(row.detok.step(token))
        if text:
            row.shown = True
            self._outbox.append((handle, TextChunk(text)))
        if hit_stop:
            return self._finish(row, "stop")
        if row.generated >= params.max_tokens or row.position >= self.loaded.context_len:
            return self._finish(row, "length")
        if now >= handle.deadline:
            return self._finish(row, "length", timed_out=True)

    def _finish(self, row: _Row, reason: str, *, error: str | None = None, timed_out: bool = False) -> None:
        row.done = True
        row.reason = reason
        handle = row.handle
        # Held-back text that never completed a stop string is real output (e.g. eos came
        # right after a partial match); after a cancel or error nobody wants it.
        tail = row.stopper.flush() if reason in ("stop", "length") else ""
        if tail:
            self._outbox.append((handle, TextChunk(tail)))
        ttft = row.first_token_at - handle.submitted if row.first_token_at else None
        self._outbox.append((handle, Finished(reason, len(handle.prompt_ids), row.generated,
                                              error=error, timed_out=timed_out, ttft_s=ttft)))
        self._recent_s.append(time.monotonic() - handle.submitted)
        if self.metrics is not None:
            self.metrics.add_generated(row.generated)

    def _drop_finished(self, group: _Group) -> None:
        import torch

        from . import kvcache

        for row in group.rows:
            if not row.done and row.handle.cancelled:
                self._finish(row, "cancelled")
        keep = [i for i, r in enumerate(group.rows) if not r.done]
        if len(keep) == len(group.rows):
            return
        if self.prefix_store.max_tokens:
            self._store_finished(group)
        self._active -= len(group.rows) - len(keep)
        if not keep:
            group.rows, group.cache, group.mask = [], None, None
            return
        idx = torch.tensor(keep, device=group.mask.device)
        mask = group.mask.index_select(0, idx)
        start = int(mask.any(dim=0).nonzero()[0])  # columns that are padding for every row left
        group.mask = mask[:, start:]
        kvcache.keep_rows(group.cache, keep, start)
        group.rows = [group.rows[i] for i in keep]

    def _store_finished(self, group: _Group) -> None:
        """Keep the cache of rows that ended well (``kvcache.PrefixStore``) for a later turn."""
        width = group.mask.shape[1]
        for i, row in enumerate(group.rows):
            if not row.done or row.reason not in ("stop", "length") or row.position > width:
                continue
            tokens = row.handle.prompt_ids + row.tokens[:-1]
            if len(tokens) != row.position:
                continue
            try:
                layers = [(layer.keys[i:i + 1, :, width - row.position:].clone(),
                           layer.values[i:i + 1, :, width - row.position:].clone()) for layer in group.cache.layers]
            except Exception:  # a cache to keep is an optimisation, never a failure
                log.exception("keeping a finished request's cache failed")
                continue
            self.prefix_store.add(row.handle.adapter, tokens, layers)

    def _from_store(self, handle: RequestHandle) -> _Prefill:
        """An arrival, with the part of its prompt that a finished request's cache holds."""
        p = _Prefill(handle)
        if not self.prefix_store.max_tokens:
            return p
        from transformers import DynamicCache

        from . import kvcache

        try:
            n, layers = self.prefix_store.match(handle.adapter, handle.prompt_ids, min_tokens=self.prefill_chunk)
            if layers is not None:
                p.cache = kvcache.to_slabs(DynamicCache(layers), 1, len(handle.prompt_ids))
                p.done = p.cached = n
        except Exception:  # prefill it whole instead
            log.exception("reusing a cached prefix failed")
            p.cache, p.done, p.cached = None, 0, 0
        return p

    def _fail_all(self, message: str, include_waiting: bool = False) -> None:
        group = self._batch
        for row in group.rows:
            if not row.done:
                self._finish(row, "error", error=message)
        self._active -= len(group.rows)
        group.rows, group.cache, group.mask = [], None, None
        for p in list(self._prefilling):
            self._end_prefill(p, Finished("error", len(p.handle.prompt_ids), 0, error=message))
        self._active = max(0, self._active)
        if include_waiting:
            with self._cv:
                waiting, self._waiting = list(self._waiting), deque()
            for handle in waiting:
                self._outbox.append((handle, Finished("error", len(handle.prompt_ids), 0, error=message)))

    def _flush(self) -> None:
        """Hand this step's outputs to their event loops: one thread-safe call per loop."""
        if not self._outbox:
            return
        by_loop: dict[Any, list] = {}
        for handle, item in self._outbox:
            by_loop.setdefault(handle.loop, []).append((handle, item))
        self._outbox = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening any more
                loop.call_soon_threadsafe(RequestHandle.deliver_all, items)
