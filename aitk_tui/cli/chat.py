"""``aitk chat "MESSAGE"``: stream one answer to stdout (waking a sleeping replica first,
saying so on stderr), and ``aitk chat --compare A,B``: both models' answers, one after the
other, each under its model's name."""

from __future__ import annotations

import argparse
import asyncio
import copy
import math
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TextIO

from ._output import EXIT_OK, OperationFailed, UsageError, err_line, error
from ._printer import EventPrinter
from ._session import endpoint_and_key, run_async

if TYPE_CHECKING:
    from ..events import Event
    from ..project import Project


MAX_TOKENS_LIMIT = 1_000_000  # past any context a model has; 2**64 is a typo, not a budget


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p.add_argument("message")
    p.add_argument("--endpoint", metavar="URL", help="default: ACA_APP_ENDPOINT from inference.config.json")
    p.add_argument("--api-key", metavar="KEY",
                   help="the endpoint's key; prefer $AITK_API_KEY or `--api-key -` (read from stdin): a key "
                        "written on the command line is visible to every local user in `ps`. Default: "
                        "$AITK_API_KEY, else the app's own secret (sent only to the app's own https endpoint)")
    p.add_argument("--insecure-http", action="store_true",
                   help="allow sending the key over plain http to this machine (127.0.0.1/localhost) only")
    p.add_argument("--system", metavar="TEXT")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--chat-model", metavar="NAME", help="model name to send (default: the server's)")
    p.add_argument("--compare", metavar="MODEL_A,MODEL_B",
                   help="send the message to two models and print both answers, labelled")


def _check_request(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) before anything is sent: an empty message went out with exit 0, and a
    temperature or token count the endpoint refuses cost a sign-in and a round trip first."""
    if not args.message.strip():
        raise UsageError("The message is empty: nothing was sent.", 'pass the text to send: aitk chat "hello"')
    t = args.temperature
    if t is not None and not (math.isfinite(t) and 0.0 <= t <= 2.0):
        raise UsageError(f"--temperature must be a number from 0 to 2, not {t}.", "0 is greedy; the chat uses 0.7")
    if args.max_tokens is not None and not 1 <= args.max_tokens <= MAX_TOKENS_LIMIT:
        raise UsageError(f"--max-tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT:,}, not {args.max_tokens}.",
                         "the model's context bounds it further")


def run(project: "Project", args: argparse.Namespace) -> int:
    _check_request(args)
    if args.compare is not None:
        compare_models(args.compare)  # a usage error now, before any sign-in
        if args.chat_model:
            raise UsageError("--compare and --chat-model contradict each other.", "pass one of them")
    printer = EventPrinter()
    return run_async(_chat(project, args, printer))


async def _chat(project: "Project", args: argparse.Namespace, printer: EventPrinter) -> int:
    async with endpoint_and_key(project, args, printer, args.endpoint) as (endpoint, api_key, verify, session, config):
        if getattr(args, "compare", None):
            return await compare_chat(endpoint, api_key, verify, args)
        logs = platform = None
        if session is not None and config is not None and config.ACA_APP_NAME:
            logs = lambda: session.replica_logs(config, tail_lines=5)  # noqa: E731 - the waking line's source
            platform = lambda: session.revision_failure(config)  # noqa: E731 - a failed revision stops the wake
        return await stream_chat(endpoint, api_key, verify, args, logs, platform=platform)


async def stream_chat(endpoint: str, api_key: str, verify: Any, args: argparse.Namespace,
                      logs: Callable[[], AsyncIterator["Event"]] | None = None, *, platform: Any = None) -> int:
    from ..chat.client import ChatClient, ChatError, Delta, Finished

    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": args.message}]
    kwargs: dict[str, Any] = {}
    if args.chat_model:
        kwargs["model"] = args.chat_model
    if args.temperature is not None:
        kwargs["temperature"] = args.temperature
    if args.max_tokens is not None:
        kwargs["max_tokens"] = args.max_tokens
    client = ChatClient(endpoint, api_key, verify=verify, allow_insecure_http=args.insecure_http)
    wrote = False
    try:
        await wake_first(client, logs, platform=platform)  # a sleeping replica: wait, saying so on stderr
        async for item in client.stream_chat(messages, **kwargs):
            if isinstance(item, Delta):
                sys.stdout.write(item.text)
                sys.stdout.flush()
                wrote = True
            elif isinstance(item, Finished):
                if wrote:
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                stats = [f"finish: {item.finish_reason}"]
                if getattr(item, "ttft_s", None) is not None:
                    stats.append(f"first token {item.ttft_s:.2f} s")
                if getattr(item, "tokens_per_s", None):
                    stats.append(f"{item.tokens_per_s:.1f} tokens/s")
                print(f"  ({', '.join(stats)})", file=sys.stderr)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl+C mid-answer: "interrupted" on its own line
        if wrote:
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise
    except ChatError as e:
        if wrote:
            sys.stdout.write("\n")
        message = getattr(e, "message", None) or str(e)
        error(message[:1].upper() + message[1:], getattr(e, "detail", None))
        raise OperationFailed() from None
    finally:
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result
    return EXIT_OK


async def wake_first(client: Any, logs: Callable[[], AsyncIterator["Event"]] | None, err: TextIO | None = None,
                     **options: Any) -> None:
    """Wait (showing progress) until the endpoint is healthy; returns at once when it is.
    Raises ChatError as :func:`~aitk_tui.chat.wake.wake` does; Ctrl+C cancels."""
    from ..chat.wake import wake

    printer = EventPrinter(err=err)  # the CLI's one renderer of events
    try:
        async with aclosing(wake(client, logs=logs, **options)) as events:
            async for event in events:
                printer(event)
    finally:
        printer.close()


# -- aitk chat --compare A,B ----------------------------------------------------------------------
def compare_models(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise UsageError(f"--compare takes two different model names: A,B (not {value!r}).",
                         "name two of the models the endpoint serves (its /v1/models)")
    return names


async def compare_chat(endpoint: str, api_key: str, verify: Any, args: argparse.Namespace) -> int:
    """Both answers, one after the other, each under its model's name (``aitk chat --compare``)."""
    failed = False
    for i, model in enumerate(compare_models(args.compare)):
        print(("\n" if i else "") + f"== {model} ==", flush=True)
        one = copy.copy(args)
        one.chat_model = model
        try:
            await stream_chat(endpoint, api_key, verify, one)
        except OperationFailed:  # already reported; the other model still answers
            failed = True
    if failed:
        err_line("error: not every model answered (see above)")
        raise OperationFailed()
    return EXIT_OK
