"""The ``aitk`` command: argument parsing, then the TUI (no command) or a headless command.

Shaped like pip's ``commands/``: :data:`COMMANDS` is the one table of commands, one row
each (name, module, help). The module (``aitk_tui.cli.<module>``) has ``add_parser`` and
``run`` and is imported only when its command runs, so ``aitk --help`` imports none of them.
Command modules import only the core (``_output``: exit codes, errors, questions, JSON;
``_printer``: the one event printer; ``_session``: async running, config, the key), never
each other (``tests/test_cli_layout.py``).

Only the standard library is imported at module level so that ``aitk --help`` and the
TUI's start stay fast; the cloud back-end, the Azure SDK and Textual load on first use.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from .. import __version__
from ._output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, OperationFailed, UsageError, err_line, error, exit_code

AUTH_CHOICES = ("auto", "cli", "env", "managed-identity", "device-code")


class Command(NamedTuple):
    """One row of the command table: ``aitk <name>`` is ``aitk_tui.cli.<module>``."""

    name: str
    module: str
    help: str
    finds_project: bool = True  # the project folder is found (and --model/--adapter checked) first

    def load(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.module}")


COMMANDS: tuple[Command, ...] = (
    Command("whoami", "account", "show who is signed in"),
    Command("subscriptions", "account", "list the subscriptions you can use"),
    Command("groups", "account", "list resource groups (or create one: groups create NAME --location L)"),
    Command("params", "params", "show, set, unset or validate inference parameters"),
    Command("provision", "provision", "provision Azure Container Apps for inference (ARM deployment)"),
    Command("deploy", "deploy", "sync inference_server/ to the file share, restart, wait for /health"),
    Command("status", "status", "the container app: revisions, replicas, scale, health, cost, and why a replica fails"),
    Command("logs", "status", "stream the replica's logs"),
    Command("chat", "chat", "send one message and stream the reply to stdout"),
    Command("key", "demo", "print the app's API key (only into a pipe or a variable, or with --show)"),
    Command("snippet", "demo",
            "print a ready call of the endpoint: curl, or the OpenAI client for Python or JavaScript"),
    Command("scale", "operate",
            "show or change the app's replicas and scale rule (an update of the app, no re-provision)"),
    Command("down", "operate",
            "delete the container app (stops GPU billing); --all: every resource provisioning created"),
    Command("models", "models",
            "upload a locally trained adapter (and base model) to the file share, or list what it holds"),
    Command("local", "local", "start, stop or inspect the local cloud"),
    Command("init", "init", "create (or refresh) the project files in DIR", finds_project=False),
)
BY_NAME = {c.name: c for c in COMMANDS}


# -- parser ------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    """Global options, accepted before or after the command (``aitk deploy --local``)."""
    p = argparse.ArgumentParser(add_help=False)
    S = argparse.SUPPRESS
    p.add_argument("--local", action="store_true", default=S,
                   help="use the local cloud (.aitk/local) instead of Azure")
    p.add_argument("--auth", choices=AUTH_CHOICES, default=S,
                   help="how to sign in to Azure (default: auto = az login / environment / VS Code ...)")
    p.add_argument("--device-code", dest="auth", action="store_const", const="device-code", default=S,
                   help="sign in with a device code (ssh, no browser); same as --auth device-code")
    p.add_argument("--project", metavar="DIR", type=Path, default=S, help="project folder (default: found from cwd)")
    p.add_argument("--model", dest="model_path", metavar="PATH", type=Path, default=S,
                   help="local cloud: base model folder to serve")
    p.add_argument("--adapter", dest="adapter_path", metavar="PATH", type=Path, default=S,
                   help="local cloud: LoRA adapter folder to serve")
    return p


def build_parser(commands: Iterable[str] | None = None,
                 parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``aitk`` parser. ``commands``: only these rows load their module and arguments;
    the others get their name and help alone (all that ``aitk --help`` shows). None: every row."""
    # Two instances: parents share action objects, and set_defaults on the top parser
    # must not give the subcommands defaults that would overwrite "--local groups".
    common = _common()
    parser = parser_class(
        prog="aitk", parents=[_common()],
        description="Provision Azure Container Apps for inference, deploy your model, and chat with it. "
                    "Without a command, opens the terminal UI.")
    parser.set_defaults(local=False, auth="auto", project=None, model_path=None, adapter_path=None, command=None)
    parser.add_argument("--version", action="version", version=f"aitk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_: str, parent: Any = sub, *, own_options: bool = False,
            **kwargs: Any) -> argparse.ArgumentParser:
        """A (sub)command's parser with the global options; ``own_options``: a fresh copy of
        them, for a parser that redefines one (``conflict_handler="resolve"``)."""
        kwargs.setdefault("description", help_)
        return parent.add_parser(name, parents=[_common() if own_options else common], help=help_, **kwargs)

    wanted = None if commands is None else set(commands)
    for row in COMMANDS:
        if wanted is not None and row.name not in wanted:
            sub.add_parser(row.name, parents=[common], help=row.help, add_help=False)
            continue
        row.load().add_parser(row.name, cmd(row.name, row.help), cmd)
    return parser


class _Unsure(Exception):
    """The first parse cannot tell the command; the full parser will say what is wrong."""


class _ProbeParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: ARG002
        raise _Unsure


def _command_in(argv: list[str]) -> list[str] | None:
    """The command ``argv`` names, found without loading any command's module (a first
    parse over bare rows); None (load every row) when that parse cannot tell."""
    try:
        args, _ = build_parser((), parser_class=_ProbeParser).parse_known_args(argv)
    except _Unsure:
        return None
    return [args.command] if args.command else []


# -- entry point ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args_seen: list[argparse.Namespace] = []
    try:
        return _main(argv, args_seen)
    finally:
        if args_seen:
            _still_running_notice(args_seen[0])


def _still_running_notice(args: argparse.Namespace) -> None:
    """After a ``--local`` command or the TUI: one stderr line if the local cloud (and its
    model replica, hundreds of MB) keeps running, and how to stop it."""
    if not getattr(args, "local", False) or args.command in ("local", "init") or getattr(args, "_noticed", False):
        return
    args._noticed = True
    try:
        from ..local import daemon
        from ..project import Project, find_project

        project = Project(args.project.resolve()) if args.project else find_project()
        text = daemon.still_running(project.local_cloud_dir)
    except Exception:  # noqa: BLE001 - a notice must never turn success into failure
        return
    if text:
        import shlex

        where = f" --project {shlex.quote(str(args.project))}" if args.project else ""
        err_line(f"note: {text}; stop it with: aitk local stop{where}")


def _main(argv: list[str] | None, args_seen: list[argparse.Namespace]) -> int:
    console = argv is None
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(_command_in(argv)).parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2)
        return int(e.code or 0)
    args_seen.append(args)
    _quiet_sdk_loggers()
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # Every command ends the same way, `status --watch` and `logs` included (as `tail -f`
        # does): exit 130 and one line, so that a script can tell Ctrl+C from success.
        code = EXIT_INTERRUPTED
        err_line("interrupted" + _interrupt_hint(args))
        if console:  # don't wait for SDK threads (a device-code wait, a poller) at exit
            _still_running_notice(args)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except OperationFailed as e:  # the Failed event was printed
        return exit_code(e)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - AitkError and anything unexpected: one line, no traceback
        from ..errors import AitkError, redact

        if isinstance(e, AitkError):
            error(e.message, e.detail)
            return exit_code(e)
        if os.environ.get("AITK_DEBUG"):
            import traceback

            traceback.print_exc()
        error("Something unexpected went wrong.", redact(f"{type(e).__name__}: {e}"))
        return EXIT_FAILED


def _interrupt_hint(args: argparse.Namespace) -> str:
    """What goes on in Azure after a Ctrl+C: only once the command sent its change there
    (``_output.operation_sent``); at the question, nothing was sent."""
    if not getattr(args, "operation_sent", False):
        return ""
    if getattr(args, "command", None) == "provision" and not getattr(args, "what_if", False):
        return " (a submitted deployment continues in Azure; run `aitk provision` again to follow it)"
    if getattr(args, "command", None) == "down":
        return " (a deletion already sent continues in Azure; run `aitk down` again to see what is left)"
    return ""


def _dispatch(args: argparse.Namespace) -> int:
    from ..project import Project, find_project

    row = BY_NAME.get(args.command)
    if row is not None and not row.finds_project:
        return row.load().run(None, args)
    _check_model_paths(args.model_path, args.adapter_path)
    project = Project(args.project.resolve()) if args.project else find_project()
    if row is None:
        from ..ui.app import run

        return int(run(project, local=args.local, auth=args.auth, model_path=args.model_path,
                       adapter_path=args.adapter_path) or 0)
    return row.load().run(project, args)


def _check_model_paths(model: Path | None, adapter: Path | None) -> None:
    """Refuse a model or adapter folder the replica could not load, before starting anything
    (otherwise the local cloud starts and the replica crash-loops)."""
    for path, marker, what, option in ((model, "config.json", "model", "--model"),
                                       (adapter, "adapter_config.json", "LoRA adapter", "--adapter")):
        if path is None:
            continue
        if not path.exists():
            raise UsageError(f"The {what} folder {path} does not exist.", f"{option} needs a folder with {marker}")
        if not path.is_dir():
            raise UsageError(f"{path} is a file, not a {what} folder.", f"{option} needs a folder with {marker}")
        if not (path / marker).is_file():
            raise UsageError(f"{path} is not a {what} folder: it has no {marker}.",
                             f"{option} needs the folder that holds {marker}")


def _quiet_sdk_loggers() -> None:
    """Keep SDK warnings off the terminal (they are not one-line errors) but let records
    propagate to whatever handlers the embedding application (or pytest) installed."""
    import logging

    for name in ("azure", "msal", "urllib3", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
