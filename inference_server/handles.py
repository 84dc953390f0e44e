"""The asyncio side of a request: its sampling parameters, the outputs it receives (text
chunks, then one ``Finished``), and the handle that carries them from the engine's thread."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after_s: int):
        super().__init__(f"{waiting} requests are already waiting")
        self.retry_after_s = retry_after_s


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

    def __init__(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None, deadline: float):
        self.prompt_ids = prompt_ids
        self.params = params
        self.adapter = adapter  # peft adapter name; None: the weights as loaded
        self.deadline = deadline  # time.monotonic() value
        self.submitted = time.monotonic()
        self.cancelled = False  # set by the event loop, read by the worker (a plain flag suffices)
        self.finished: Finished | None = None
        self.loop = asyncio.get_running_loop()  # the event loop its outputs are delivered on
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

    # -- used by the engine's loop --------------------------------------------------------
    def deliver(self, item: TextChunk | Finished) -> None:
        """Hand this request an output (on its event loop)."""
        self._queue.put_nowait(item)

    @staticmethod
    def deliver_all(items: list[tuple[RequestHandle, TextChunk | Finished]]) -> None:
        """Deliver one step's outputs (the engine's thread hands them to each event loop in
        one ``call_soon_threadsafe`` call)."""
        for handle, item in items:
            handle.deliver(item)


def failure_message(exc: Exception) -> str:
    """What the client reads when generation fails: the kind of failure, not the exception
    text (paths, tensors)."""
    return f"generation failed for this request ({type(exc).__name__}); the server log has the details"
