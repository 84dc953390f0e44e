"""The headless cloud commands of ``aitk`` (imported lazily by :mod:`aitk_tui.cli`).

whoami, subscriptions, groups, provision, deploy, status, logs, chat. Each opens a
:class:`~aitk_tui.cloud.session.CloudSession`, prints progress events to stderr (see
:class:`EventPrinter`) and the result to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO, TypeVar

from .cli import EXIT_OK, OperationFailed, UsageError, _error
from .cloud.session import CloudSession
from .config.inference_config import InferenceConfig
from .errors import AitkError, redact
from .events import Done, Event, Failed, HealthWait, Info, LogLine, ResourceProgress, UploadProgress
from .project import Project

T = TypeVar("T")


# -- progress printing ---------------------------------------------------------------------
class EventPrinter:
    """Readable progress lines on stderr; uploads and health probes are throttled."""

    def __init__(self, err: TextIO | None = None, out: TextIO | None = None) -> None:
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self._upload_bucket = -1
        self._upload_at = 0.0
        self._health: tuple[str, float] | None = None
        self._waking: Any = None  # cli_wake.StatusLine while a sleeping replica wakes

    def close(self) -> None:
        if self._waking is not None:
            self._waking.close()

    def _line(self, text: str) -> None:
        print(redact(text), file=self.err, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Info):
            self._line(("warning: " if event.level == "warning" else "") + event.message)
        elif isinstance(event, ResourceProgress):
            msg = f": {event.message}" if event.message else ""
            self._line(f"  {event.state:<10} {event.resource_type} {event.resource_name}  "
                       f"({event.elapsed_s:.1f} s){msg}")
        elif isinstance(event, UploadProgress):
            now = time.monotonic()
            pct = 100 * event.files_done // max(1, event.files_total)
            bucket = pct // 10
            if event.files_done == event.files_total or bucket > self._upload_bucket or now - self._upload_at >= 1:
                self._upload_bucket, self._upload_at = bucket, now
                from .cloud.sync_plan import format_size

                self._line(f"  uploaded {event.files_done}/{event.files_total} "
                           f"{'file' if event.files_total == 1 else 'files'} "
                           f"({format_size(event.bytes_done)} of {format_size(event.bytes_total)}, {pct}%)")
        elif isinstance(event, HealthWait):
            last = self._health
            if last is None or last[0] != event.status or event.elapsed_s - last[1] >= 10:
                self._health = (event.status, event.elapsed_s)
                detail = f": {event.detail}" if event.detail and event.status != "ok" else ""
                self._line(f"  /health {event.status} after {event.elapsed_s:.0f} s{detail}")
        elif isinstance(event, LogLine):
            print(redact(event.text), file=self.out, flush=True)
        elif isinstance(event, Done):
            print(redact(event.summary), file=self.out, flush=True)
        elif isinstance(event, Failed):
            _error(event.message, event.detail)
        elif type(event).__name__ in ("Waking", "Awake"):  # chat.wake's events (not imported: startup)
            if self._waking is None:
                from .cli_wake import StatusLine

                self._waking = StatusLine(self.err)
            if type(event).__name__ == "Waking":
                self._waking.waking(event.elapsed_s, event.log_line)  # type: ignore[attr-defined]
            else:
                self._waking.awake(event.elapsed_s)  # type: ignore[attr-defined]


async def drive(events: AsyncIterator[Event], printer: EventPrinter, *, show_done: bool = True) -> Done:
    """Print every event; return the Done event, or raise OperationFailed after a Failed one."""
    done: Done | None = None
    try:
        async for event in events:
            if isinstance(event, Done):
                done = event
                if show_done:
                    printer(event)
                continue
            printer(event)
            if isinstance(event, Failed):
                raise OperationFailed(config_error=event.config_error)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    if done is None:
        raise AitkError("The operation ended without a result.")
    return done


async def drive_for(events: AsyncIterator[Event], printer: EventPrinter, kind: type[T], *,
                    show_done: bool = True) -> T:
    """:func:`drive`, then the Done's typed result, which must be a ``kind``."""
    done = await drive(events, printer, show_done=show_done)
    if not isinstance(done.result, kind):
        raise AitkError("The operation ended without a result.",
                        f"expected {kind.__name__}, got {type(done.result).__name__}")
    return done.result


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


# -- shared steps ---------------------------------------------------------------------------
async def open_session(project: Project, args: argparse.Namespace, printer: EventPrinter) -> CloudSession:
    from .backend import open_session as open_backend

    session = await open_backend(project, local=args.local, auth=args.auth,
                                 model_path=args.model_path, adapter_path=args.adapter_path)
    session.prompt_sink = lambda message: printer(Info(message))
    if not args.local:
        await drive(session.sign_in(), printer, show_done=False)
    return session


def _remembered(session: CloudSession, value: str | None) -> str | None:
    """Ignore a remembered local-cloud subscription on Azure and the other way round."""
    from .backend import subscription_fits

    return value if subscription_fits(session.endpoints, value) else None


async def resolve_subscription(session: CloudSession, explicit: str | None) -> str:
    if explicit:
        return explicit
    state = session.load_state()
    remembered = _remembered(session, state.subscription_id)
    if remembered:
        return remembered
    subs = [s for s in await session.list_subscriptions() if s.state == "Enabled"]
    if len(subs) == 1:
        return subs[0].id
    raise UsageError("No subscription chosen.", "pass --subscription ID (see `aitk subscriptions`)")


def load_config(project: Project) -> InferenceConfig:
    try:
        return InferenceConfig.load(project.config_path)
    except AitkError as e:
        raise UsageError(e.message, e.detail) from None


def require_config(config: InferenceConfig, *keys: str) -> InferenceConfig:
    try:
        return config.require(*keys)
    except AitkError as e:
        raise UsageError(e.message, e.detail) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- commands ------------------------------------------------------------------------------
async def _whoami(session: CloudSession, args: argparse.Namespace, printer: EventPrinter) -> int:
    identity = await session.whoami()
    if args.json:
        _print_json(dataclasses.asdict(identity))
    else:
        tenant = f" in tenant {identity.tenant_id}" if identity.tenant_id else ""
        print(f"{identity.display_name}{tenant} (via {identity.method})")
    return EXIT_OK


async def _subscriptions(session: CloudSession, args: argparse.Namespace, printer: EventPrinter) -> int:
    subs = await session.list_subscriptions()
    if args.json:
        _print_json([dataclasses.asdict(s) for s in subs])
        return EXIT_OK
    current = _remembered(session, session.load_state().subscription_id)
    if not subs:
        print("No subscriptions: this account cannot use any Azure subscription.", file=sys.stderr)
    for s in subs:
        mark = "*" if s.id == current else " "
        print(f"{mark} {s.id}  {s.name}  ({s.state})")
    return EXIT_OK


async def _groups(session: CloudSession, args: argparse.Namespace, printer: EventPrinter) -> int:
    sub = await resolve_subscription(session, args.subscription)
    if args.groups_command == "create":
        group = await session.create_resource_group(sub, args.name, args.location)
        print(f"Resource group {group.name} is ready in {group.location}.")
        return EXIT_OK
    groups = await session.list_resource_groups(sub)
    if args.json:
        _print_json([dataclasses.asdict(g) for g in groups])
        return EXIT_OK
    if not groups:
        print(f"No resource groups in subscription {sub}. Create one with: "
              "aitk groups create NAME --location LOCATION", file=sys.stderr)
    current = session.load_state().resource_group
    for g in groups:
        print(f"{'*' if g.name == current else ' '} {g.name}  ({g.location})")
    return EXIT_OK


def _ask(question: str) -> bool:
    print(question + " [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


async def _provision(session: CloudSession, args: argparse.Namespace, printer: EventPrinter,
                     params: Any) -> int:
    sub = await resolve_subscription(session, args.subscription)
    rg = args.resource_group or session.load_state().resource_group
    if not rg:
        raise UsageError("No resource group chosen.", "pass --resource-group NAME (see `aitk groups`)")
    if args.what_if or not args.yes:
        from .cloud.models import WhatIf

        what_if = await drive_for(session.what_if(sub, rg, params), printer, WhatIf)
        for change in what_if.changes:
            print(f"  {change.change_type:<10} {change.resource_type} {change.name}")
        _print_cost_estimate(session, params)
        if args.what_if:
            return EXIT_OK
        if not _ask(f"Provision these resources in {rg}?"):
            print("Nothing was changed.", file=sys.stderr)
            return EXIT_OK
    await drive(session.provision(sub, rg, params), printer)
    return EXIT_OK


def _print_cost_estimate(session: CloudSession, params: Any) -> None:
    """One line under the what-if: what the app will cost (an estimate), when the table prices it."""
    from .cloud.prices import estimate_for_parameters
    from .cloud.provision import load_template

    try:
        cost = estimate_for_parameters(params.values(), load_template(session))
    except (AitkError, ValueError):
        return  # the what-if already reported a bad template
    if cost is not None:
        print(f"  {cost.summary()}")


async def _deploy(session: CloudSession, args: argparse.Namespace, printer: EventPrinter, config: Any) -> int:
    await drive(session.deploy(config, restart=not args.no_restart, wait=not args.no_wait,
                               health_timeout_s=args.timeout, force_restart=args.restart,
                               warn_bytes=int(min(args.warn_size, 2.0 ** 40) * 1024 * 1024)), printer)
    return EXIT_OK


async def _status(session: CloudSession, args: argparse.Namespace, printer: EventPrinter, config: Any) -> int:
    from . import cli_status

    return await cli_status.show(session, config, as_json=args.json, watch=args.watch)


async def _logs(session: CloudSession, args: argparse.Namespace, printer: EventPrinter, config: Any) -> int:
    kind = "system" if args.system else "console"
    async for event in session.replica_logs(config, follow=not args.no_follow, tail_lines=args.tail, kind=kind):
        if isinstance(event, LogLine) and event.probe and not args.probes:
            continue
        printer(event)
        if isinstance(event, Failed):
            raise OperationFailed()
    return EXIT_OK


def _given_api_key(args: argparse.Namespace) -> str | None:
    """The key the user gave: ``--api-key -`` reads stdin, a literal one works but is
    visible in ``ps`` (warned), else $AITK_API_KEY; None means "the app's own secret"."""
    from .errors import register_secret

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


async def _chat(project: Project, args: argparse.Namespace, printer: EventPrinter) -> int:
    from .chat.client import key_destination_problem

    config = None if args.endpoint else require_config(load_config(project), "ACA_APP_ENDPOINT")
    endpoint = args.endpoint or config.endpoint_url
    api_key = _given_api_key(args)
    if api_key:  # the user's own key: still https only (loopback http when asked)
        problem = key_destination_problem(endpoint, allow_insecure_http=args.insecure_http)
        if problem:
            raise UsageError(f"The API key was not sent: {problem}.")
    session = None
    verify: Any = True
    try:
        if args.local or not api_key:
            session = await open_session(project, args, printer)
            verify = session.endpoints.verify
        if not api_key:
            if config is None:
                config = load_config(project)
            api_key = await session.api_key(require_config(config, "SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME",
                                                           "ACA_APP_NAME"),
                                            endpoint, allow_insecure_http=args.insecure_http)
        if getattr(args, "compare", None):
            from .cli_demo import compare_chat

            return await compare_chat(endpoint, api_key, verify, args)
        logs = platform = None
        if session is not None and config is not None and config.ACA_APP_NAME:
            logs = lambda: session.replica_logs(config, tail_lines=5)  # noqa: E731 - the waking line's source
            platform = lambda: session.revision_failure(config)  # noqa: E731 - a failed revision stops the wake
        return await _stream_chat(endpoint, api_key, verify, args, logs, platform=platform)
    finally:
        if session is not None:
            await session.close()


async def _stream_chat(endpoint: str, api_key: str, verify: Any, args: argparse.Namespace,
                       logs: Callable[[], AsyncIterator[Event]] | None = None, *, platform: Any = None) -> int:
    from .chat.client import ChatClient, ChatError, Delta, Finished

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
        from .cli_wake import wake_first

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
    except ChatError as e:
        if wrote:
            sys.stdout.write("\n")
        message = getattr(e, "message", None) or str(e)
        _error(message[:1].upper() + message[1:], getattr(e, "detail", None))
        raise OperationFailed() from None
    finally:
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result
    return EXIT_OK


COMMANDS: dict[str, Callable[..., Awaitable[int]]] = {
    "whoami": _whoami, "subscriptions": _subscriptions, "groups": _groups,
}
NEEDS_CONFIG = {"deploy": _deploy, "status": _status, "logs": _logs}


def run(project: Project, args: argparse.Namespace) -> int:
    printer = EventPrinter()
    # Checks that need no cloud come first, so a usage error is quick and clear.
    params = config = None
    if args.command == "provision":
        from .config.parameters import ParametersDocument

        try:
            params = ParametersDocument.load(project.parameters_path)
            params.validate()
        except AitkError as e:
            raise UsageError(e.message, e.detail) from None
        if not args.yes and not args.what_if and not sys.stdin.isatty():
            raise UsageError("Refusing to provision without confirmation: there is no terminal to ask on.",
                             "pass --yes to provision, or --what-if to preview")
    elif args.command in NEEDS_CONFIG:
        if args.command == "deploy":
            if args.restart and args.no_restart:
                raise UsageError("--restart and --no-restart contradict each other.", "pass one of them")
            if not args.warn_size >= 0:  # also NaN
                raise UsageError(f"--warn-size must be a size in MB, not {args.warn_size}.")
        config = load_config(project)
        keys = ["SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "ACA_APP_NAME"]
        if args.command == "deploy":
            keys += ["STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME"]
        require_config(config, *keys)
        if config.from_local_cloud and not args.local:
            raise UsageError("infra/inference.config.json is the local cloud's (its endpoint is on this machine), "
                             "not an Azure deployment.", "add --local, or provision to Azure first")
    elif args.command == "chat":
        return run_async(_chat(project, args, printer))

    async def go() -> int:
        session = await open_session(project, args, printer)
        try:
            if args.command == "provision":
                return await _provision(session, args, printer, params)
            if args.command in NEEDS_CONFIG:
                return await NEEDS_CONFIG[args.command](session, args, printer, config)
            return await COMMANDS[args.command](session, args, printer)
        finally:
            await session.close()

    return run_async(go())
