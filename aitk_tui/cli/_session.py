"""What the commands share on their way to the back-end: running a coroutine
(:func:`run_async`), opening a session (:func:`session_for`), loading
``infra/inference.config.json``, the subscription to use, and the one lookup of an endpoint
and the API key to send it (:func:`endpoint_and_key`, for ``chat`` and ``snippet``).

The back-end is reached through :mod:`aitk_tui.backend` only (the ``Backend`` contract);
it and the SDK load on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._output import UsageError
from ._printer import EventPrinter, drive

if TYPE_CHECKING:
    from ..backend import Backend
    from ..config.inference_config import InferenceConfig
    from ..project import Project

T = TypeVar("T")


# -- running coroutines ---------------------------------------------------------------------
def run_async(coro: Awaitable[T]) -> T:
    """Like asyncio.run, but Ctrl-C does not wait for SDK threads still blocked in a call.

    On Ctrl-C the command's task is cancelled and given a moment to wind down (an upload
    records the files that finished); then every task still left is cancelled too: a task it
    started (a log follower, a platform check) would otherwise stay inside an async
    generator, whose forced close at shutdown printed a traceback. (Not all at once: a
    thread's task cancelled first would let the command stop waiting for that thread.) What
    the loop still reports while it winds down after a Ctrl-C is not shown (one
    "interrupted" line says it all)."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)  # type: ignore[arg-type]
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        loop.set_exception_handler(lambda _loop, _context: None)
        try:
            task.cancel()
            loop.run_until_complete(asyncio.wait([task], timeout=3))
            rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in rest:
                t.cancel()
            if rest:
                loop.run_until_complete(asyncio.wait(rest, timeout=1))
        except BaseException:  # noqa: BLE001 - a second Ctrl-C: leave now
            pass
        raise
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException:  # noqa: BLE001
            pass
        loop.close()  # shuts the default executor down without waiting


# -- sessions ---------------------------------------------------------------------------------
async def open_session(project: "Project", args: argparse.Namespace, printer: EventPrinter) -> "Backend":
    from ..backend import open_session as open_backend
    from ..events import Info

    session = await open_backend(project, local=args.local, auth=args.auth,
                                 model_path=args.model_path, adapter_path=args.adapter_path,
                                 prompt_sink=lambda message: printer(Info(message)))
    if not args.local:
        await drive(session.sign_in(), printer, show_done=False)
    return session


@contextlib.asynccontextmanager
async def session_for(project: "Project", args: argparse.Namespace,
                      printer: EventPrinter) -> AsyncIterator["Backend"]:
    """An open (signed-in) session, closed on the way out."""
    session = await open_session(project, args, printer)
    try:
        yield session
    finally:
        await session.close()


def run_in_session(project: "Project", args: argparse.Namespace, printer: EventPrinter,
                   work: Callable[["Backend"], Awaitable[int]]) -> int:
    """A command's run: open a session, ``work`` on it, close it; the exit code."""
    async def go() -> int:
        async with session_for(project, args, printer) as session:
            return await work(session)

    return run_async(go())


def remembered(session: "Backend", value: str | None) -> str | None:
    """Ignore a remembered local-cloud subscription on Azure and the other way round."""
    from ..backend import subscription_fits

    return value if subscription_fits(session.endpoints, value) else None


async def resolve_subscription(session: "Backend", explicit: str | None) -> str:
    if explicit:
        return explicit
    state = session.load_state()
    chosen = remembered(session, state.subscription_id)
    if chosen:
        return chosen
    subs = [s for s in await session.list_subscriptions() if s.state == "Enabled"]
    if len(subs) == 1:
        return subs[0].id
    raise UsageError("No subscription chosen.", "pass --subscription ID (see `aitk subscriptions`)")


# -- infra/inference.config.json -----------------------------------------------------------------
def load_config(project: "Project", *keys: str) -> "InferenceConfig":
    """The project's config, with ``keys`` filled in (a ConfigFileError, exit 2, otherwise)."""
    from ..config.inference_config import InferenceConfig

    config = InferenceConfig.load(project.config_path)
    return config.require(*dict.fromkeys(keys)) if keys else config


def azure_config(project: "Project", args: argparse.Namespace, *keys: str,
                 hint: str = "add --local, or provision to Azure first") -> "InferenceConfig":
    """The config with ``keys``, refused when it is the local cloud's and ``--local`` is not given."""
    config = load_config(project, *keys)
    if config.from_local_cloud and not args.local:
        raise UsageError("infra/inference.config.json is the local cloud's (its endpoint is on this machine), "
                         "not an Azure deployment.", hint)
    return config


# -- the API key ---------------------------------------------------------------------------------
def given_api_key(args: argparse.Namespace) -> str | None:
    """The key the user gave: ``--api-key -`` reads stdin, a literal one works but is
    visible in ``ps`` (warned), else $AITK_API_KEY; None means "the app's own secret"."""
    from ..errors import register_secret

    key = args.api_key
    if key == "-":
        key = sys.stdin.readline().strip()
        if not key:
            raise UsageError("--api-key - read no key from stdin.",
                             "pipe the key in: `... | aitk chat --api-key - MSG`")
    elif key:
        register_secret(key)
        print("warning: an API key on the command line is visible to every local user (ps); "
              "use $AITK_API_KEY or --api-key - (stdin) instead.", file=sys.stderr, flush=True)
    key = key or os.environ.get("AITK_API_KEY") or None
    register_secret(key)
    return key


class KeyedEndpoint(NamedTuple):
    url: str
    api_key: str
    verify: Any  # what TLS trusts there: the local cloud's CA for its loopback apps, else the system's
    session: "Backend | None"  # open while the lookup's block runs; None when none was needed
    config: "InferenceConfig | None"


@contextlib.asynccontextmanager
async def endpoint_and_key(project: "Project", args: argparse.Namespace, printer: EventPrinter,
                           endpoint: str | None = None) -> AsyncIterator[KeyedEndpoint]:
    """The endpoint (``endpoint``, else ACA_APP_ENDPOINT) and the key to send it: the one the
    user gave (``--api-key``, ``$AITK_API_KEY``; https only, loopback http when asked), else the
    app's own secret, which ``Backend.api_key`` hands out only for the app's own endpoint."""
    from ..chat.keys import key_destination_problem
    from ..config.inference_config import APP_KEYS

    config = None if endpoint else load_config(project, "ACA_APP_ENDPOINT")
    url = endpoint or config.endpoint_url
    insecure_http = getattr(args, "insecure_http", False)
    api_key = given_api_key(args)
    if api_key:  # the user's own key: still https only (loopback http when asked)
        problem = key_destination_problem(url, allow_insecure_http=insecure_http)
        if problem:
            raise UsageError(f"The API key was not sent: {problem}.")
    session = None
    try:
        if args.local or not api_key:
            session = await open_session(project, args, printer)
        if not api_key:
            config = config or load_config(project)
            api_key = await session.api_key(config.require(*APP_KEYS), url, allow_insecure_http=insecure_http)
        verify = True if session is None else session.endpoints.trust_for(url)
        yield KeyedEndpoint(url, api_key, verify, session, config)
    finally:
        if session is not None:
            await session.close()
