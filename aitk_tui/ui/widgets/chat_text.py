"""The chat's words and small helpers, shared by the Chat tab and compare mode: an error as
one sentence a user can act on, an answer's statistics line, stopping a Markdown stream
safely, and warming the chat client. No widgets here."""

from __future__ import annotations

import asyncio
from typing import Any


def explain_chat_error(message: str, status: int | None) -> str:
    """One sentence a user can act on, by HTTP status."""
    if status in (401, 403):
        return (f"The endpoint refused the API key (HTTP {status}). Go to inference endpoint (F9) fetches "
                "the app's key, or type the right key under Settings.")
    if status == 429:
        return f"The server is busy (HTTP 429, too many requests): {message}. Wait a moment and send again."
    if status in (502, 503, 504) or status is None and _looks_unreachable(message):
        return ("The endpoint is not answering yet: a container app scaled to zero takes a few minutes "
                f"to wake and load its model ({message}). Send again shortly.")
    if status == 404:
        return "This URL does not serve /v1/chat/completions (HTTP 404); check the endpoint under Settings."
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _looks_unreachable(message: str) -> bool:
    text = message.lower()
    return any(w in text for w in ("connect", "unreachable", "timed out", "timeout", "refused", "waking",
                                   "loading", "asleep", "starting"))


def warm_client() -> None:
    from ...chat.client import warm_up

    warm_up()


async def stop_stream(stream: Any) -> bool:
    """Stop a Markdown stream; False if it could not finish (the caller rewrites the Markdown).

    ``MarkdownStream.stop`` raises CancelledError when its task was cancelled before it
    ever ran (an answer that failed at once): that is not our task being cancelled, and
    letting it escape a handler would end the pane's message loop.
    """
    try:
        await stream.stop()
        return True
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return False
    except Exception:  # noqa: BLE001 - rendering trouble must not keep the prompt locked
        return False


def format_stats(finished: Any, text: str) -> str:
    if finished is None:
        return "✓ done"
    parts = []
    ttft = getattr(finished, "ttft_s", None)
    tps = getattr(finished, "tokens_per_s", None)
    usage = getattr(finished, "usage", None) or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else getattr(usage, "completion_tokens", None)
    if ttft is not None:
        parts.append(f"first token {ttft:.2f} s")
    if tps is not None:
        parts.append(f"{tps:.1f} tok/s")
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    reason = getattr(finished, "finish_reason", None)
    if reason:
        parts.append(str(reason))
    return "✓ " + " · ".join(parts) if parts else "✓ done"
