"""What every command prints besides events: exit codes, errors, questions, JSON.

Conventions: progress goes to stderr as readable lines, results to stdout (``--json``
where the result is a list); exit 0 ok, 1 the operation failed, 2 usage or config error,
130 interrupted. Every error is one line: ``aitk: error: <sentence> (<detail>)``.

Ctrl+C (SIGINT) ends every command the same way, ``status --watch`` and ``logs`` included:
exit 130 and one line, ``aitk: interrupted`` (plus what goes on in Azure, once something
was sent there: :func:`operation_sent`). A question (:func:`ask`, :func:`confirm`) that gets
no answer because its input ended (Ctrl+D, a closed stdin) is not a yes: :class:`NoAnswer`,
exit 1, as a declined one.

Standard library only (every ``aitk`` run imports this).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import AitkError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(AitkError):
    """A usage problem found by the CLI itself (exit 2)."""

    config_error = True


class OperationFailed(Exception):
    """A Failed event was already printed (exit 1, or 2 when it was a configuration problem)."""

    def __init__(self, config_error: bool = False) -> None:
        super().__init__()
        self.config_error = config_error


def exit_code(e: BaseException) -> int:
    """The one mapping from an error to the exit code: 2 when it is the user's to fix (an
    error class that says ``config_error``, or a Failed event that did), 1 otherwise."""
    return EXIT_USAGE if getattr(e, "config_error", False) else EXIT_FAILED


def error(message: str, detail: str | None = None) -> None:
    from ..errors import redact

    text = redact(message).rstrip()
    if detail:
        text = f"{text} ({redact(detail).strip()})"
    err_line("error: " + " ".join(text.split()))


def err_line(text: str) -> None:
    print(f"aitk: {text}", file=sys.stderr, flush=True)


class NoAnswer(AitkError):
    """The input ended (Ctrl+D, a closed stdin) before a question was answered (exit 1)."""

    def __init__(self) -> None:
        super().__init__("No answer: the input ended before the question was answered, so nothing was changed.",
                         "answer y, or type the name asked for; or pass --yes")


def operation_sent(args: Any) -> None:
    """From here on the command has sent (or is sending) its change to Azure: a Ctrl+C then
    says that the change goes on there (before it, nothing was sent, and it says nothing)."""
    args.operation_sent = True


def _answer(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    try:
        line = sys.stdin.readline()
    except KeyboardInterrupt:
        print(file=sys.stderr, flush=True)  # "aitk: interrupted" on a line of its own, not after the question
        raise
    if not line:
        print(file=sys.stderr, flush=True)
        raise NoAnswer()
    return line.strip()


def ask(question: str) -> bool:
    return _answer(question + " [y/N] ").lower() in ("y", "yes")


def confirm(question: str, expected: str | None = None) -> bool:
    if expected is None:
        return ask(question)
    return _answer(f"{question} Type {expected} to confirm: ") == expected


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
