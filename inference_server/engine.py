"""Generation (no HTTP): continuous batching over a hand-written decode loop.

One worker thread owns the model. At every iteration it admits waiting requests (prefilled
together, left-padded, within a prompt-token budget so running rows are not starved), then
runs one decode step for every active row, and drops rows that finished, were cancelled
or ran out of time. Rows join and leave the running batch between steps: the batch's KV
cache is left-padded to a common length and an attention mask hides the padding, with
explicit per-row position ids, so a row computes what it would compute alone.

Rows with and without the adapter (an unmerged adapter lets the base be served too) run
as two groups, each with its own cache; one step decodes both.

Results go back to asyncio through ``loop.call_soon_threadsafe`` once per step, with each
request's text decoded incrementally (``tokenizers.decoders.DecodeStream``) and partial
stop strings held back until they are ruled out (``textstream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .loading import LoadedModel, LoadError, load_model  # noqa: F401  (re-exported)
from .textstream import Detokenizer, StopMatcher

log = logging.getLogger("inference_server.engine")


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after_s: int):
        super().__init__(f"{waiting} requests are already waiting")
        self.retry_after_s = retry_after_s


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" | "length" | "cancelled" | "error"
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    timed_out: bool = False
    queue_timeout: bool = False
    ttft_s: float | None = None


class RequestHandle:
    """The asyncio side of one request: its outputs, and a way to cancel it."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, use_adapter: bool, deadline: float):
        self.prompt_ids = prompt_ids
        self.params = params
        self.use_adapter = use_adapter
        self.deadline = deadline  # time.monotonic() value
        self.submitted = time.monotonic()
        self.cancelled = False  # set by the event loop, read by the worker (a plain flag suffices)
        self.finished: Finished | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[TextChunk | Finished] = asyncio.Queue()

    def cancel(self) -> None:
        self.cancelled = True

    async def next_output(self) -> tuple[str, Finished | None]:
        """Text produced since the last call (pieces merged, so a slow reader catches up)."""
        item = await self._queue.get()
        items = [item]
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        text = "".join(i.text for i in items if isinstance(i, TextChunk))
        done = next((i for i in items if isinstance(i, Finished)), None)
        if done is not None:
            self.finished = done
        return text, done

    async def result(self) -> tuple[str, Finished]:
        parts: list[str] = []
        while True:
            text, done = await self.next_output()
            parts.append(text)
            if done is not None:
                return "".join(parts), done


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


@dataclass(eq=False)
class _Group:
    """Rows decoded together (same adapter state) and their shared, left-padded KV cache."""

    use_adapter: bool
    rows: list[_Row] = field(default_factory=list)
    cache: Any = None
    mask: Any = None  # [rows, cache length] 1 = real token, 0 = left padding


# --------------------------------------------------------------------------- engine
class Engine:
    def __init__(self, loaded: LoadedModel, *, max_batch_size: int = 8, max_queue: int = 64,
                 max_prefill_tokens: int = 4096, metrics: Any = None):
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_prefill_tokens = max_prefill_tokens
        self.metrics = metrics
        self._cv = threading.Condition()
        self._waiting: deque[RequestHandle] = deque()
        self._groups = {True: _Group(True), False: _Group(False)}
        self._active = 0
        self._stopping = False
        self._outbox: list[tuple[RequestHandle, TextChunk | Finished]] = []
        self._recent_s: deque[float] = deque(maxlen=32)  # request durations, for Retry-After
        self.peak_batch = 0  # most rows decoded in one step so far (tests and benchmarks read it)
        self.peak_prefill = 0  # most requests prefilled in one forward so far
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

    def submit(self, prompt_ids: list[int], params: SamplingParams, *, use_adapter: bool,
               timeout_s: float) -> RequestHandle:
        """Queue a request (call from the event loop); QueueFull when the queue is full."""
        handle = RequestHandle(prompt_ids, params, use_adapter, time.monotonic() + timeout_s)
        with self._cv:
            if self._stopping:
                raise RuntimeError("the engine is shutting down")
            free_slots = max(0, self.max_batch_size - self._active)
            if len(self._waiting) >= self.max_queue + free_slots:
                raise QueueFull(len(self._waiting), self._retry_after())
            self._waiting.append(handle)
            self._cv.notify()
        return handle

    def _retry_after(self) -> int:
        typical = sorted(self._recent_s)[len(self._recent_s) // 2] if self._recent_s else 1.0
        waves = (len(self._waiting) + self.max_batch_size) / self.max_batch_size
        return max(1, min(60, round(typical * waves)))

    # -- worker side -------------------------------------------------------------
    def _warm_up(self) -> None:
        import torch

        with torch.inference_mode():  # first call pays one-off costs (kernels, allocator)
            self._forward(True if self.loaded.adapter_id else False,
                          torch.tensor([[0]], device=self.loaded.device), None, None, None)

    def _forward(self, use_adapter: bool, input_ids, mask, positions, cache):
        model = self.loaded.model
        ctx = contextlib.nullcontext()
        if not use_adapter and self.loaded.adapter_id is not None and not self.loaded.merged:
            ctx = model.disable_adapter()
        kwargs = {self.loaded.cache_kwarg: cache} if cache is not None else {}
        with ctx:
            out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                        use_cache=cache is not None, logits_to_keep=1, **kwargs)
        return out.logits[:, -1, :].float()

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._stopping and not self._waiting and self._active == 0:
                        self._cv.wait()
                    if self._stopping:
                        break
                    admitted = self._take_admissible()
                for chunk in self._prefill_chunks(admitted):
                    try:
                        self._prefill(chunk)
                    except Exception as exc:
                        log.exception("prefill failed")
                        self._active -= len(chunk)
                        for handle in chunk:
                            self._outbox.append((handle, Finished(
                                "error", len(handle.prompt_ids), 0,
                                error=f"generation failed: {type(exc).__name__}: {exc}")))
                try:
                    for group in self._groups.values():
                        if group.rows:
                            self._decode_step(group)
                except Exception as exc:  # keep serving: fail the rows in flight, not the server
                    log.exception("generation step failed")
                    self._fail_all(f"generation failed: {type(exc).__name__}: {exc}")
                self._flush()
        self._fail_all("the server is shutting down", include_waiting=True)
        self._flush()

    def _take_admissible(self) -> list[RequestHandle]:
        now = time.monotonic()
        kept: deque[RequestHandle] = deque()
        admitted: list[RequestHandle] = []
        budget = self.max_prefill_tokens
        for handle in self._waiting:
            if handle.cancelled:
                self._finish_waiting(handle, Finished("cancelled", len(handle.prompt_ids), 0))
            elif now >= handle.deadline:
                self._finish_waiting(handle, Finished(
                    "error", len(handle.prompt_ids), 0, error="timed out waiting for a free slot",
                    timed_out=True, queue_timeout=True))
            elif (self._active < self.max_batch_size
                  and (not admitted or len(handle.prompt_ids) <= budget)):
                budget -= len(handle.prompt_ids)
                self._active += 1
                admitted.append(handle)
            else:
                kept.append(handle)
        self._waiting = kept
        return admitted

    def _finish_waiting(self, handle: RequestHandle, done: Finished) -> None:
        self._outbox.append((handle, done))

    def _prefill_chunks(self, admitted: list[RequestHandle]) -> list[list[RequestHandle]]:
        """Prefill batches: same adapter state, similar lengths, padded size within budget.

        Prefilling arrivals together (left-padded) costs little more than the longest
        alone on a GPU, and on a CPU still saves per-call overhead; sorting by length
        keeps the padding small.
        """
        chunks: list[list[RequestHandle]] = []
        for use_adapter in (True, False):
            same = sorted((h for h in admitted if h.use_adapter == use_adapter), key=lambda h: len(h.prompt_ids))
            current: list[RequestHandle] = []
            for handle in same:
                padded = (len(current) + 1) * len(handle.prompt_ids)
                if current and padded > self.max_prefill_tokens:
                    chunks.append(current)
                    current = []
                current.append(handle)
            if current:
                chunks.append(current)
        return chunks

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
        logits = self._forward(handles[0].use_adapter, ids, mask, positions, cache)
        rows = []
        for handle, n in zip(handles, lengths, strict=True):
            seed = handle.params.seed if handle.params.seed is not None else secrets.randbits(62)
            generator = torch.Generator(device=device).manual_seed(seed)
            rows.append(_Row(handle, Detokenizer(self.loaded.tokenizer), StopMatcher(handle.params.stop),
                             generator, position=n))
        tokens = self._sample(rows, logits)
        group = self._groups[handles[0].use_adapter]
        self._join(group, rows, cache, mask)
        for row, token in zip(rows, tokens, strict=True):
            self._accept(row, token)
        self._drop_finished(group)

    def _join(self, group: _Group, rows: list[_Row], cache, mask) -> None:
        import torch
        import torch.nn.functional as F

        if not group.rows:
            group.rows, group.cache, group.mask = list(rows), cache, mask
            return
        width, n = group.mask.shape[1], mask.shape[1]
        total = max(width, n)
        for mine, theirs in zip(group.cache.layers, cache.layers, strict=True):
            # Left-pad the shorter side along the sequence axis; the mask hides the pads.
            mine.keys = torch.cat([F.pad(mine.keys, (0, 0, total - width, 0)),
                                   F.pad(theirs.keys, (0, 0, total - n, 0))])
            mine.values = torch.cat([F.pad(mine.values, (0, 0, total - width, 0)),
                                     F.pad(theirs.values, (0, 0, total - n, 0))])
        group.mask = torch.cat([F.pad(group.mask, (total - width, 0)), F.pad(mask, (total - n, 0))])
        group.rows.extend(rows)

    def _decode_step(self, group: _Group) -> None:
        import torch

        device = self.loaded.device
        rows = group.rows
        self.peak_batch = max(self.peak_batch, sum(len(g.rows) for g in self._groups.values()))
        ids = torch.tensor([[r.last_token] for r in rows], device=device)
        positions = torch.tensor([[r.position] for r in rows], device=device)
        group.mask = torch.cat([group.mask, group.mask.new_ones((len(rows), 1))], dim=1)
        logits = self._forward(group.use_adapter, ids, group.mask, positions, group.cache)
        for row, token in zip(rows, self._sample(rows, logits), strict=True):
            row.position += 1
            self._accept(row, token)
        self._drop_finished(group)

    def _sample(self, rows: list[_Row], logits) -> list[int]:
        import torch

        tokens = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            p = row.handle.params
            if p.temperature <= 0:
                continue
            scores = logits[i] / p.temperature
            if p.top_p < 1.0:
                sorted_scores, order = torch.sort(scores, descending=True)
                sorted_probs = torch.softmax(sorted_scores, dim=-1)
                # Drop a token once the mass before it reaches top_p (the top one always stays).
                cut = sorted_probs.cumsum(dim=-1) - sorted_probs >= p.top_p
                scores = scores.scatter(0, order[cut], float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            tokens[i] = int(torch.multinomial(probs, 1, generator=row.generator))
        return tokens

    def _accept(self, row: _Row, token: int) -> None:
        handle, params = row.handle, row.handle.params
        row.generated += 1
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
            self._outbox.append((handle, TextChunk(text)))
        if hit_stop:
            return self._finish(row, "stop")
        if row.generated >= params.max_tokens or row.position >= self.loaded.context_len:
            return self._finish(row, "length")
        if now >= handle.deadline:
            return self._finish(row, "length", timed_out=True)

    def _finish(self, row: _Row, reason: str, *, error: str | None = None, timed_out: bool = False) -> None:
        row.done = True
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

        for row in group.rows:
            if not row.done and row.handle.cancelled:
                self._finish(row, "cancelled")
        keep = [i for i, r in enumerate(group.rows) if not r.done]
        if len(keep) == len(group.rows):
            return
        self._active -= len(group.rows) - len(keep)
        if not keep:
            group.rows, group.cache, group.mask = [], None, None
            return
        idx = torch.tensor(keep, device=group.mask.device)
        mask = group.mask.index_select(0, idx)
        start = int(mask.any(dim=0).nonzero()[0])  # columns that are padding for every row left
        group.mask = mask[:, start:]
        for layer in group.cache.layers:
            layer.keys = layer.keys.index_select(0, idx)[:, :, start:]
            layer.values = layer.values.index_select(0, idx)[:, :, start:]
        group.rows = [group.rows[i] for i in keep]

    def _fail_all(self, message: str, include_waiting: bool = False) -> None:
        for group in self._groups.values():
            for row in group.rows:
                if not row.done:
                    self._finish(row, "error", error=message)
            self._active -= len(group.rows)
            group.rows, group.cache, group.mask = [], None, None
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
            by_loop.setdefault(handle._loop, []).append((handle, item))
        self._outbox = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening any more
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items) -> None:
    for handle, item in items:
        handle._queue.put_nowait(item)
