"""The ``aitk`` command: argument parsing, then the TUI (no command) or a headless command.

Only the standard library is imported at module level so that ``aitk --help`` and the
TUI's start stay fast; the cloud back-end, the Azure SDK and Textual load on first use.

Conventions: progress goes to stderr as readable lines, results to stdout (``--json``
where the result is a list); exit 0 ok, 1 the operation failed, 2 usage or config error,
130 interrupted. Every error is one line: ``aitk: error: <sentence> (<detail>)``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__

AUTH_CHOICES = ("auto", "cli", "env", "managed-identity", "device-code")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A usage or configuration problem (exit 2)."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message, self.detail = message, detail


class OperationFailed(Exception):
    """A Failed event was already printed (exit 1, or 2 when it was a configuration problem)."""

    def __init__(self, config_error: bool = False) -> None:
        super().__init__()
        self.config_error = config_error


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


def build_parser() -> argparse.ArgumentParser:
    # Two instances: parents share action objects, and set_defaults on the top parser
    # must not give the subcommands defaults that would overwrite "--local groups".
    common = _common()
    parser = argparse.ArgumentParser(
        prog="aitk", parents=[_common()],
        description="Provision Azure Container Apps for inference, deploy your model, and chat with it. "
                    "Without a command, opens the terminal UI.")
    parser.set_defaults(local=False, auth="auto", project=None, model_path=None, adapter_path=None, command=None)
    parser.add_argument("--version", action="version", version=f"aitk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_: str, parent: Any = sub) -> argparse.ArgumentParser:
        return parent.add_parser(name, parents=[common], help=help_, description=help_)

    p = cmd("whoami", "show who is signed in")
    p.add_argument("--json", action="store_true")

    p = cmd("subscriptions", "list the subscriptions you can use")
    p.add_argument("--json", action="store_true")

    p = cmd("groups", "list resource groups (or create one: groups create NAME --location L)")
    p.add_argument("--subscription", metavar="ID")
    p.add_argument("--json", action="store_true")
    gsub = p.add_subparsers(dest="groups_command", metavar="ACTION")
    c = cmd("create", "create a resource group", gsub)
    c.add_argument("name")
    c.add_argument("--location", required=True)
    c.add_argument("--subscription", metavar="ID", default=argparse.SUPPRESS)

    p = cmd("params", "show, set, unset or validate inference parameters")
    psub = p.add_subparsers(dest="params_command", metavar="ACTION")
    c = cmd("show", "show the parameters", psub)
    c.add_argument("--json", action="store_true")
    c = cmd("set", "set parameters: KEY=VALUE ... (null restores the template default)", psub)
    c.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    c = cmd("unset", "put parameters back to the template default (null); removes a name the template does not have",
            psub)
    c.add_argument("names", nargs="+", metavar="KEY")
    cmd("validate", "check every parameter against Azure's naming rules", psub)

    p = cmd("provision", "provision Azure Container Apps for inference (ARM deployment)")
    p.add_argument("--subscription", metavar="ID")
    p.add_argument("--resource-group", metavar="NAME")
    p.add_argument("--what-if", action="store_true", help="only preview the changes")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    p = cmd("deploy", "sync inference_server/ to the file share, restart, wait for /health")
    p.add_argument("--no-restart", action="store_true", help="only sync the files")
    p.add_argument("--restart", action="store_true",
                   help="restart the replica even when no file changed (by default it is restarted only then)")
    p.add_argument("--warn-size", type=float, default=20, metavar="MB",
                   help="warn about files larger than this (default 20 MB); skip files with .aitkignore")
    p.add_argument("--no-wait", action="store_true", help="do not wait for /health after the restart")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="how long to wait for /health (default: 1200 on Azure, 180 locally)")

    p = cmd("status", "the container app: revisions, replicas, scale, health, cost, and why a replica fails")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", "--live", nargs="?", type=float, const=0.0, default=None, metavar="SECONDS",
                   help="refresh until Ctrl+C (every 5 s on Azure, 2 s locally, or SECONDS)")

    p = cmd("logs", "stream the replica's logs")
    p.add_argument("--no-follow", action="store_true", help="print the recent lines and exit")
    p.add_argument("--tail", type=int, default=100, metavar="N")
    p.add_argument("--probes", action="store_true", help="also show the /health probes' access lines (hidden by default)")
    p.add_argument("--system", action="store_true",
                   help="the system log instead: replica assignment, image pull, probe failures, restarts, scaling")

    p = cmd("chat", "send one message and stream the reply to stdout")
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

    p = cmd("key", "print the app's API key (only into a pipe or a variable, or with --show)")
    p.add_argument("--show", action="store_true", help="print it even to a terminal")

    p = cmd("snippet", "print a ready call of the endpoint: curl, or the OpenAI client for Python or JavaScript")
    p.add_argument("language", nargs="?", choices=("curl", "python", "js"), default="curl")
    p.add_argument("--endpoint", metavar="URL", help="default: ACA_APP_ENDPOINT from inference.config.json")
    p.add_argument("--chat-model", metavar="NAME", help="model to call (default: ask the endpoint for its default)")
    p.add_argument("--insecure-http", action="store_true",
                   help="allow asking a plain-http endpoint on this machine for its model (the key is sent)")
    p.set_defaults(api_key=None)  # the key to ask with: $AITK_API_KEY, else the app's secret

    from . import cli_operate

    cli_operate.add_commands(cmd)  # scale, down
    from . import cli_models

    cli_models.add_commands(cmd, _common)  # models upload, models list

    p = cmd("local", "start, stop or inspect the local cloud")
    lsub = p.add_subparsers(dest="local_command", metavar="ACTION")
    c = cmd("start", "start the local cloud (in the background)", lsub)
    c.add_argument("--json", action="store_true")
    c = cmd("stop", "stop the local cloud and its replicas", lsub)
    c.add_argument("--all", action="store_true", help="stop every local cloud of this user, whatever the project")
    c = cmd("status", "is the local cloud running?", lsub)
    c.add_argument("--json", action="store_true")

    p = cmd("init", "create (or refresh) the project files in DIR")
    p.add_argument("dir", nargs="?", type=Path)
    return parser


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
        from .local import daemon
        from .project import Project, find_project

        project = Project(args.project.resolve()) if args.project else find_project()
        text = daemon.still_running(project.local_cloud_dir)
    except Exception:  # noqa: BLE001 - a notice must never turn success into failure
        return
    if text:
        import shlex

        where = f" --project {shlex.quote(str(args.project))}" if args.project else ""
        _err_line(f"note: {text}; stop it with: aitk local stop{where}")


def _main(argv: list[str] | None, args_seen: list[argparse.Namespace]) -> int:
    console = argv is None
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2)
        return int(e.code or 0)
    args_seen.append(args)
    _quiet_sdk_loggers()
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # Ctrl+C is how `aitk status --watch` ends: not an interruption, exit 0.
        watching = getattr(args, "command", None) == "status" and getattr(args, "watch", None) is not None
        code = EXIT_OK if watching else EXIT_INTERRUPTED
        if not watching:
            _err_line("interrupted" + _interrupt_hint(args))
        if console:  # don't wait for SDK threads (a device-code wait, a poller) at exit
            _still_running_notice(args)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except UsageError as e:
        _error(e.message, e.detail)
        return EXIT_USAGE
    except OperationFailed as e:
        return EXIT_USAGE if e.config_error else EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - AitkError and anything unexpected: one line, no traceback
        from .errors import AitkError, redact

        if isinstance(e, AitkError):
            _error(e.message, e.detail)
            return EXIT_USAGE if _is_config_error(e) else EXIT_FAILED
        if os.environ.get("AITK_DEBUG"):
            import traceback

            traceback.print_exc()
        _error("Something unexpected went wrong.", redact(f"{type(e).__name__}: {e}"))
        return EXIT_FAILED


def _interrupt_hint(args: argparse.Namespace) -> str:
    if getattr(args, "command", None) == "provision" and not getattr(args, "what_if", False):
        return " (a submitted deployment continues in Azure; run `aitk provision` again to follow it)"
    if getattr(args, "command", None) == "down":
        return " (a deletion already sent continues in Azure; run `aitk down` again to see what is left)"
    return ""


def _is_config_error(e: Exception) -> bool:
    from .cloud.sdkerrors import InputError, NotSignedInError
    from .config.inference_config import ConfigFileError
    from .config.parameters import ParametersFileError, UnknownParameterError

    return isinstance(e, (ParametersFileError, ConfigFileError, InputError, NotSignedInError, UnknownParameterError))


def _dispatch(args: argparse.Namespace) -> int:
    from .project import Project, find_project

    if args.command == "init":
        return _cmd_init(args)
    _check_model_paths(args.model_path, args.adapter_path)
    project = Project(args.project.resolve()) if args.project else find_project()
    if args.command is None:
        from .ui.app import run

        return int(run(project, local=args.local, auth=args.auth, model_path=args.model_path,
                       adapter_path=args.adapter_path) or 0)
    if args.command == "params":
        from . import cli_params

        return cli_params.run(project, args)
    if args.command == "local":
        return _cmd_local(project, args)
    if args.command in ("scale", "down"):
        from . import cli_operate

        return cli_operate.run(project, args)
    if args.command == "models":
        from . import cli_models

        return cli_models.run(project, args)
    if args.command in ("key", "snippet"):
        from . import cli_demo

        return cli_demo.run(project, args)
    if args.command == "chat" and args.compare is not None:
        from .cli_demo import compare_models

        compare_models(args.compare)  # a usage error now, before any sign-in
        if args.chat_model:
            raise UsageError("--compare and --chat-model contradict each other.", "pass one of them")
    from . import cli_cloud

    return cli_cloud.run(project, args)


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


def _cmd_init(args: argparse.Namespace) -> int:
    from .scaffold import init_project

    dest = (args.dir or args.project or Path.cwd()).resolve()
    report = init_project(dest)
    for label, names in (("wrote", report.written), ("updated", report.updated), ("kept", report.kept)):
        for name in names:
            print(f"  {label:<8} {name}", file=sys.stderr)
    for name in report.conflicts:
        print(f"  changed  {name} (yours kept; the shipped version was not applied)", file=sys.stderr)
    print(f"Project ready in {dest}: {report.summary()}.")
    return EXIT_OK


def _cmd_local(project: Any, args: argparse.Namespace) -> int:
    import json

    from .local import daemon

    action = args.local_command or "status"
    state_dir = project.local_cloud_dir
    if action == "start":
        info = daemon.ensure_running(state_dir, model_path=args.model_path, adapter_path=args.adapter_path)
        if getattr(args, "json", False):
            print(json.dumps({"url": info.url, "ca_bundle": str(info.ca_bundle), "pid": info.pid}))
        else:
            print(f"Local cloud running at {info.url} (pid {info.pid}); state in {state_dir}")
        return EXIT_OK
    if action == "stop" and getattr(args, "all", False):
        dirs = daemon.stop_all()
        if not dirs:
            print("No local cloud was running.")
        for d in dirs:
            print(f"Stopped the local cloud of {d}.")
        return EXIT_OK
    if action == "stop":
        stopped = daemon.stop(state_dir)
        print("Local cloud stopped." if stopped else "The local cloud was not running.")
        return EXIT_OK
    info = daemon.status(state_dir)
    if getattr(args, "json", False):
        print(json.dumps(None if info is None else {"url": info.url, "ca_bundle": str(info.ca_bundle),
                                                     "pid": info.pid}))
    else:
        print("The local cloud is not running." if info is None
              else f"Local cloud running at {info.url} (pid {info.pid})")
    return EXIT_OK


# -- output helpers -------------------------------------------------------------------------
def _error(message: str, detail: str | None = None) -> None:
    from .errors import redact

    text = redact(message).rstrip()
    if detail:
        text = f"{text} ({redact(detail).strip()})"
    _err_line("error: " + " ".join(text.split()))


def _err_line(text: str) -> None:
    print(f"aitk: {text}", file=sys.stderr, flush=True)


def _quiet_sdk_loggers() -> None:
    """Keep SDK warnings off the terminal (they are not one-line errors) but let records
    propagate to whatever handlers the embedding application (or pytest) installed."""
    import logging

    for name in ("azure", "msal", "urllib3", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
