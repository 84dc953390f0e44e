"""Drive the real ``aitk`` in a pseudo-terminal and read its screen, as a person does.

The app runs as its console entry point (``python -m aitk_tui``, the same ``main`` as
``.venv/bin/aitk``) on the slave side of a pty sized 80x24 (``TERM=xterm-256color``);
a reader thread feeds everything it draws into a pyte screen. Tests then press keys
and wait for words to appear, never reaching into the app's widgets.

    with AitkTerminal(project, "--local") as term:
        term.wait_for_text("Azure")
        term.send_keys("f2")
        term.wait_for_text("Search")
        term.send_keys("deploy", "enter")

``close()`` (also on leaving the ``with``) presses F10, waits for the process to exit,
then kills its process group; with ``local_cloud=True`` (the default when ``--local``
is passed) it also runs ``aitk local stop`` in the project, so no local cloud or replica
is left behind. Each test gets its own ``XDG_CONFIG_HOME`` so user settings never leak in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import pyte

# What an xterm sends for each key name (Textual decodes these the same way it does from
# a real terminal). Anything not listed is sent as typed text.
KEYS: dict[str, str] = {
    "enter": "\r", "tab": "\t", "shift+tab": "\x1b[Z", "escape": "\x1b", "esc": "\x1b",
    "backspace": "\x7f", "delete": "\x1b[3~", "space": " ",
    "up": "\x1b[A", "down": "\x1b[B", "right": "\x1b[C", "left": "\x1b[D",
    "home": "\x1b[H", "end": "\x1b[F", "pageup": "\x1b[5~", "pagedown": "\x1b[6~",
    "f1": "\x1bOP", "f2": "\x1bOQ", "f3": "\x1bOR", "f4": "\x1bOS",
    "f5": "\x1b[15~", "f6": "\x1b[17~", "f7": "\x1b[18~", "f8": "\x1b[19~",
    "f9": "\x1b[20~", "f10": "\x1b[21~", "f11": "\x1b[23~", "f12": "\x1b[24~",
}
_CTRL = re.compile(r"ctrl\+([a-z])")


def key_bytes(key: str) -> bytes:
    """The bytes a terminal sends for ``key`` (a name from :data:`KEYS`, ``ctrl+x``, or text)."""
    if key in KEYS:
        return KEYS[key].encode()
    m = _CTRL.fullmatch(key)
    if m:
        return bytes([ord(m.group(1)) & 0x1F])
    return key.encode()


class AitkTerminal:
    """The real ``aitk`` in a pty of ``cols`` x ``rows``, its screen read through pyte."""

    def __init__(self, project: Path, *args: str, cols: int = 80, rows: int = 24,
                 env: dict[str, str] | None = None, config_home: Path | None = None,
                 local_cloud: bool | None = None, op_delay_s: float = 0.02) -> None:
        self.project = Path(project)
        self.args = list(args)
        self.cols, self.rows = cols, rows
        self.local_cloud = ("--local" in args) if local_cloud is None else local_cloud
        self._screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self._screen)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._raw = bytearray()
        self._env = self._make_env(env, config_home, op_delay_s)
        self.proc: subprocess.Popen | None = None
        self._master: int | None = None
        self._reader: threading.Thread | None = None

    # -- process -------------------------------------------------------------------
    def _make_env(self, extra: dict[str, str] | None, config_home: Path | None, op_delay_s: float) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TEXTUAL", "AITK_TUI_"))}
        env.pop("AITK_API_KEY", None)
        config_home = config_home or self.project / ".test-xdg"
        config_home.mkdir(parents=True, exist_ok=True)
        env.update(TERM="xterm-256color", COLORTERM="truecolor", COLUMNS=str(self.cols), LINES=str(self.rows),
                   XDG_CONFIG_HOME=str(config_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   AITK_TORCH_THREADS="1", AITK_LOCAL_OP_DELAY=str(op_delay_s), PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def start(self) -> "AitkTerminal":
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aitk_tui", *self.args], cwd=self.project, env=self._env,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True,
            # The pty becomes the child's controlling terminal (a session leader opening it).
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(target=self._read_loop, name="pty-reader", daemon=True)
        self._reader.start()
        return self

    def _read_loop(self) -> None:
        assert self._master is not None
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed its side
                data = b""
            with self._changed:
                if not data:
                    self._changed.notify_all()
                    return
                self._raw += data
                self._stream.feed(data)
                self._changed.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- keys ------------------------------------------------------------------------
    def send_keys(self, *keys: str, pause: float = 0.05) -> None:
        """Press each key in turn (names as in :data:`KEYS`, ``ctrl+x``, or text to type).

        The pause lets Textual tell a lone Esc from the start of an escape sequence.
        """
        assert self._master is not None, "start() first"
        for key in keys:
            os.write(self._master, key_bytes(key))
            time.sleep(pause + (0.1 if key in ("escape", "esc") else 0))

    def type_text(self, text: str) -> None:
        assert self._master is not None, "start() first"
        os.write(self._master, text.encode())

    # -- screen ----------------------------------------------------------------------
    def screen_text(self) -> str:
        """The screen as 24 lines of text (trailing blanks stripped)."""
        with self._lock:
            return "\n".join(line.rstrip() for line in self._screen.display)

    def lines(self) -> list[str]:
        return self.screen_text().split("\n")

    def wait_until(self, predicate: Callable[[str], bool], timeout: float = 10.0, what: str = "condition") -> str:
        """Wait until ``predicate(screen_text())`` holds; the screen then, or AssertionError with it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                text = "\n".join(line.rstrip() for line in self._screen.display)
                if predicate(text):
                    return text
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if not self.alive and (self._reader is None or not self._reader.is_alive()):
                    # The tail read here, under the lock already held (output_tail() would wait
                    # on it forever: a failure then hung until pytest's 180 s timeout).
                    tail = bytes(self._raw[-2000:]).decode(errors="replace")
                    raise AssertionError(f"aitk exited ({self.proc.returncode if self.proc else None}) while waiting "
                                         f"for {what}; last screen:\n{text}\n--- output tail:\n{tail}")
                self._changed.wait(min(left, 0.2))
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; screen:\n{text}")

    def wait_for_text(self, text: str | re.Pattern[str], timeout: float = 10.0) -> str:
        """Wait until ``text`` (a string or compiled regex) is on the screen; returns the screen."""
        if isinstance(text, re.Pattern):
            return self.wait_until(lambda s: bool(text.search(s)), timeout, f"/{text.pattern}/")
        return self.wait_until(lambda s: text in s, timeout, repr(text))

    def wait_for_gone(self, text: str, timeout: float = 10.0) -> str:
        return self.wait_until(lambda s: text not in s, timeout, f"{text!r} to disappear")

    def wait_for_quiet(self, quiet_s: float = 0.3, timeout: float = 10.0) -> str:
        """Wait until nothing has been drawn for ``quiet_s`` (the app is idle); returns the screen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                size = len(self._raw)
            time.sleep(quiet_s)
            with self._lock:
                if len(self._raw) == size:
                    return "\n".join(line.rstrip() for line in self._screen.display)
        raise AssertionError(f"the screen kept changing for {timeout:.0f} s:\n{self.screen_text()}")

    def output_tail(self, n: int = 2000) -> str:
        with self._lock:
            return bytes(self._raw[-n:]).decode(errors="replace")

    # -- shutdown --------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> int | None:
        """F10, then TERM/KILL the process group; ``aitk local stop`` for a local cloud. The exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None and self._master is not None:
            with contextlib.suppress(OSError):
                os.write(self._master, key_bytes("f10"))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        # Whatever else the app started in its session (not the detached local cloud).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        if self._reader is not None:
            self._reader.join(2.0)
        if self.local_cloud:
            subprocess.run([sys.executable, "-m", "aitk_tui", "local", "stop"], cwd=self.project, env=self._env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        return proc.returncode

    def __enter__(self) -> "AitkTerminal":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_line(screen: str, text: str) -> str | None:
    """The first line of ``screen`` that contains ``text``."""
    return next((line for line in screen.split("\n") if text in line), None)


def contains_all(screen: str, words: Iterable[str]) -> bool:
    return all(w in screen for w in words)
