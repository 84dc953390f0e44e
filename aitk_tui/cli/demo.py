"""The demo commands: ``aitk key`` and ``aitk snippet [curl|python|js]``. The key comes from
the container app's secret (``Backend.api_key``: only for the app's own endpoint); the
snippet finds its endpoint and key through the same lookup as ``aitk chat``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._output import EXIT_OK, UsageError
from ._printer import EventPrinter
from ._session import endpoint_and_key, load_config, run_async, session_for

if TYPE_CHECKING:
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    if name == "key":
        p.add_argument("--show", action="store_true", help="print it even to a terminal")
        return
    p.add_argument("language", nargs="?", choices=("curl", "python", "js"), default="curl")
    p.add_argument("--endpoint", metavar="URL", help="default: ACA_APP_ENDPOINT from inference.config.json")
    p.add_argument("--chat-model", metavar="NAME", help="model to call (default: ask the endpoint for its default)")
    p.add_argument("--insecure-http", action="store_true",
                   help="allow asking a plain-http endpoint on this machine for its model (the key is sent)")
    p.set_defaults(api_key=None)  # the key to ask with: $AITK_API_KEY, else the app's secret


def run(project: "Project", args: argparse.Namespace) -> int:
    printer = EventPrinter()
    if args.command == "key":
        return run_async(_key(project, args, printer))
    return run_async(_snippet(project, args, printer))


async def _key(project: "Project", args: argparse.Namespace, printer: EventPrinter) -> int:
    if sys.stdout.isatty() and not args.show:  # checked first: no sign-in just to refuse
        raise UsageError("The API key is not printed to a terminal (it would stay in the scrollback).",
                         'pass --show to print it, or capture it: export AITK_API_KEY="$(aitk key)"')
    from ..config.inference_config import APP_KEYS

    config = load_config(project, "ACA_APP_ENDPOINT", *APP_KEYS)
    async with session_for(project, args, printer) as session:
        key = await session.api_key(config)
    sys.stdout.write(key + "\n")
    return EXIT_OK


async def _snippet(project: "Project", args: argparse.Namespace, printer: EventPrinter) -> int:
    from ..chat.client import ChatClient, ChatError
    from ..snippets import key_command, snippet

    model = args.chat_model
    ca_bundle = None
    if model and not args.local:  # everything is known: no cloud call at all
        endpoint = args.endpoint or load_config(project, "ACA_APP_ENDPOINT").endpoint_url
    else:
        async with endpoint_and_key(project, args, printer, args.endpoint) as (endpoint, api_key, verify, _, _):
            ca_bundle = verify if isinstance(verify, str) else None
            if not model:
                try:
                    async with ChatClient(endpoint, api_key, verify=verify,
                                          allow_insecure_http=args.insecure_http) as client:
                        model = await client.default_model()
                except ChatError as e:
                    raise UsageError(f"Could not ask the endpoint which model it serves: {e.message}",
                                     (e.detail or "") + "; or name it with --chat-model") from None
    project_flag = str(args.project) if args.project else None
    try:
        text = snippet(args.language, endpoint, model, ca_bundle=ca_bundle,
                       set_key=key_command(local=args.local, project=project_flag))
    except ValueError as e:
        raise UsageError(str(e)) from None
    sys.stdout.write(text)
    return EXIT_OK
