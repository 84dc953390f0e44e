"""What every command prints besides events: exit codes, errors, questions, JSON.

Conventions: progress goes to stderr as readable lines, results to stdout (``--json``
where the result is a list); exit 0 ok, 1 the operation failed, 2 usage or config error,
130 interrupted. Every error is one line: ``aitk: error: <sentence> (<detail>)``.

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


def ask(question: str) -> bool:
    print(question + " [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def confirm(question: str, expected: str | None = None) -> bool:
    if expected is None:
        return ask(question)
    print(f"{question} Type {expected} to confirm: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == expected


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
