"""What the commands share on their way to the back-end: running a coroutine
(:func:`run_async`), opening a session (:func:`session_for`), loading
``infra/inference.config.json``, the subscription to use, and the API key the user gave.

The back-end is reached through :mod:`aitk_tui.backend` only (the ``Backend`` contract);
it and the SDK load on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, TypeVar

from ._output import UsageError
from ._printer import EventPrinter, drive

if TYPE_CHECKING:
    from ..backend import Backend
    from ..config.inference_config import InferenceConfig
    from ..project import Project

T = TypeVar("T")


# -- running coroutines ---------------------------------------------------------------------
def run_async(coro: Awaitable[T]) -> T:
    """Like asyncio.run, but Ctrl-C does not wait for SDK threads still blocked in a call."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)  # type: ignore[arg-type]
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        task.cancel()
        try:
            loop.run_until_complete(asyncio.wait([task], timeout=3))
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
                                 model_path=args.model_path, adapter_path=args.adapter_path)
    session.prompt_sink = lambda message: printer(Info(message))
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
def load_config(project: "Project") -> "InferenceConfig":
    from ..config.inference_config import InferenceConfig
    from ..errors import AitkError

    try:
        return InferenceConfig.load(project.config_path)
    except AitkError as e:
        raise UsageError(e.message, e.detail) from None


def require_config(config: "InferenceConfig", *keys: str) -> "InferenceConfig":
    from ..errors import AitkError

    try:
        return config.require(*keys)
    except AitkError as e:
        raise UsageError(e.message, e.detail) from None


def azure_config(project: "Project", args: argparse.Namespace, *keys: str,
                 hint: str = "add --local, or provision to Azure first") -> "InferenceConfig":
    """The config with ``keys``, refused when it is the local cloud's and ``--local`` is not given."""
    config = require_config(load_config(project), *keys)
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
            raise UsageError("--api-key - read no key from stdin.", "pipe the key in: `... | aitk chat --api-key - MSG`")
    elif key:
        register_secret(key)
        print("warning: an API key on the command line is visible to every local user (ps); "
              "use $AITK_API_KEY or --api-key - (stdin) instead.", file=sys.stderr, flush=True)
    key = key or os.environ.get("AITK_API_KEY") or None
    register_secret(key)
    return key
