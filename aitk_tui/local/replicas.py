"""Container-app replicas as local processes.

One supervisor thread per app runs the app's command the way the container would:
``/mount`` mapped to the share's folder (cwd, command, env values), ``python``/``python3``
resolving to the current interpreter, ``pip install`` steps skipped (logged), the app's env
vars and secrets, and ``AITK_HOST``/``AITK_PORT``/``AITK_SSL_*`` so the inference server
serves HTTPS on the app's stable port with a certificate from the local CA. A replica that
exits is restarted with exponential back-off (1 s .. 30 s) like a crash-looping
container; a revision restart restarts it at once. Output goes to one log file per app
(served by the log stream). Each replica runs in its own process group, recorded in the
store so that a later server can clean up after a crashed one.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .resources import ResourceHandlers
from .store import Store, now_iso
from .tls import TlsFiles
from . import replica_env

log = logging.getLogger("aitk_tui.local")
MAX_BACKOFF_S = 30.0
_PIP = re.compile(r"^(?:pip3?|python3?\s+-m\s+pip)\s+install\b")
_SEP = re.compile(r"(\s*(?:&&|;)\s*)")


class ReplicaError(Exception):
    """The replica cannot be started (the message is logged and shown as its state)."""


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against killing a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _group_running(pgid: int) -> bool:
    """Whether any process of the group is alive (zombies waiting for a reaper do not count)."""
    if not os.path.isdir("/proc"):  # macOS: no /proc; a signal 0 tells whether the group exists
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(pid: int, start_time: str | None = None, timeout_s: float = 5.0) -> bool:
    """TERM then KILL the process group led by ``pid``; True once none of it runs.

    With ``start_time``, a live process with that pid but another start time is a recycled
    pid and is left alone.
    """
    current = proc_start_time(pid)
    if start_time is not None and current is not None and current != start_time:
        return False
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _group_running(pid):
                return True
            time.sleep(0.05)
    return not _group_running(pid)


def kill_recorded(store: Store) -> int:
    """Kill replica processes a previous server recorded; returns how many were found."""
    n = 0
    for app_id, app in store.apps().items():
        pid = app.get("pid")
        if pid and kill_group(pid, app.get("pid_start"), timeout_s=3.0):
            n += 1
        if pid:
            store.update_app(app["id"], pid=None, pid_start=None)
    return n


def map_mount(text: str, mount: Path, shell: bool = False) -> str:
    repl = str(mount)
    if shell and re.search(r"[^\w@%+=:,./-]", repl):
        repl = shlex.quote(repl)
    return re.sub(r"(?<![\w/.])/mount(?=/|\s|$|['\";])", lambda m: repl, text)


def _adapters_exist(value: str) -> bool:
    """Does every folder in an AITK_ADAPTER_PATH value (PATH, or NAME=PATH,...) exist?"""
    from inference_server.settings import parse_adapters  # the server's own reading of the value

    try:
        specs = parse_adapters(value)
    except ValueError:
        return False
    return bool(specs) and all(spec.path.exists() for spec in specs)


def build_command(argv: list[str], mount: Path, note) -> list[str]:
    """The container command for a local run: ``/mount`` mapped, ``pip install`` skipped."""
    if not argv:
        raise ReplicaError("the container has no command; the local cloud runs only an explicit command")
    if len(argv) >= 3 and os.path.basename(argv[0]) in ("bash", "sh") and argv[1] == "-c":
        parts = _SEP.split(argv[2])
        kept: list[str] = []
        for i in range(0, len(parts), 2):
            step = parts[i].strip()
            if _PIP.match(step):
                note(f"skipped `{step}`: replicas run in aitk's own Python environment ({sys.prefix}), which already "
                     "has the inference server's dependencies")
                continue
            if step:
                if kept:
                    kept.append(f" {parts[i - 1].strip()} ")
                kept.append(map_mount(step, mount, shell=True))
        return ["/bin/bash", "-c", "".join(kept) or "true", *argv[3:]]
    return [map_mount(a, mount) for a in argv]


class _Supervisor(threading.Thread):
    def __init__(self, mgr: "ReplicaManager", app_id: str) -> None:
        super().__init__(name=f"aitk-replica-{app_id.rsplit('/', 1)[-1]}", daemon=True)
        self.mgr, self.app_id = mgr, app_id
        self.wake = threading.Event()
        self.restart_requested = False
        self.stopping = False
        self.proc: subprocess.Popen | None = None
        self.state = "Activating"  # Activating | Running | Failed | Stopped
        self.ready = False
        self.ever_ready = False
        self.details = "starting"
        self.ready_at_exit = False
        self.restart_count = 0
        self.created = now_iso()
        self.revision: str | None = None

    def note(self, text: str) -> None:
        self.mgr.append_log(self.app_id, text)

    def request_restart(self) -> None:
        self.restart_requested = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def run(self) -> None:
        backoff = 0.0
        first = True
        while not self.stopping:
            app = self.mgr.store.app(self.app_id) or {}
            if app.get("stopped"):
                self.state, self.ready, self.details = "Stopped", False, "the app is stopped"
                self.wake.wait()
                self.wake.clear()
                continue
            if not first:
                self.restart_count += 1
            first = False
            self.restart_requested = False
            self.wake.clear()
            self.state, self.ready, self.created = "Activating", False, now_iso()
            code = self._run_once()
            if self.stopping:
                break
            if self.restart_requested:
                backoff = 0.0
                continue
            backoff = 1.0 if self.ever_ready and self.ready_at_exit else min(max(backoff * 2, 1.0), MAX_BACKOFF_S)
            self.state, self.ready = "Failed", False
            self.details = f"{self.details}; restarting in {backoff:.0f} s"
            self.note(f"replica {'exited with code ' + str(code) if code is not None else 'could not start'}; "
                      f"restarting in {backoff:.0f} s")
            self.wake.wait(backoff)
        self._kill()
        self.state, self.ready = "Stopped", False

    def _run_once(self) -> int | None:
        self.ready_at_exit = False
        try:
            argv, cwd, env = self.mgr.prepare(self.app_id, self.note, lambda: self.stopping)
        except ReplicaError as e:
            self.details = str(e)
            self.note(f"cannot start the replica: {e}")
            return None
        self.revision = env.get("CONTAINER_APP_REVISION")
        self.mgr.rotate_log(self.app_id)
        self.note(f"starting replica: {' '.join(shlex.quote(a) for a in argv)} (cwd {cwd})")
        logf = open(self.mgr.log_path(self.app_id), "ab")
        try:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self.details = f"the command could not be run: {e}"
            self.note(self.details)
            return None
        finally:
            logf.close()
        proc = self.proc
        self.mgr.store.update_app(self.app_id, pid=proc.pid, pid_start=proc_start_time(proc.pid))
        self.state, self.details = "Activating", "waiting for /health"
        port = int(env["AITK_PORT"])
        while proc.poll() is None and not self.stopping and not self.restart_requested:
            ok = self.mgr.probe(port)
            if ok and not self.ready:
                self.note(f"replica is ready on https://127.0.0.1:{port}")
                self.mgr.store.update_app(self.app_id, ready_revision=self.revision)
                self.ever_ready = True
            self.ready = ok
            self.state = "Running" if ok else "Activating"
            self.details = "the replica is running" if ok else "waiting for /health"
            self.wake.wait(1.0 if ok else 0.3)
        self.ready_at_exit = self.ready
        code = proc.poll()
        if code is None:
            self._kill()
            code = proc.poll()
        else:
            self.details = f"the process exited with code {code}"
        self.mgr.store.update_app(self.app_id, pid=None, pid_start=None)
        return code

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            kill_group(proc.pid)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.ready = False

    def status(self) -> dict:
        return {"state": self.state, "ready": self.ready, "details": self.details, "pid": self.proc.pid if self.proc else None,
                "restart_count": self.restart_count, "created": self.created, "revision": self.revision,
                "started": self.proc is not None and self.proc.poll() is None}


#: Seconds per generated token for the built-in demo model (about 30 words a second).
DEMO_STEP_INTERVAL = "0.06"


class ReplicaManager:
    def __init__(self, state_dir: Path, store: Store, handlers: ResourceHandlers, tls: TlsFiles, *,
                 model_path: Path | None = None, adapter_path: Path | None = None,
                 demo_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.demo_dir = Path(demo_dir) if demo_dir else self.state_dir / "demo-model"
        self.store, self.handlers, self.tls = store, handlers, tls
        self.model_path = Path(model_path) if model_path else None
        self.adapter_path = Path(adapter_path) if adapter_path else None
        self._sups: dict[str, _Supervisor] = {}
        self._lock = threading.Lock()
        self._demo_lock = threading.Lock()
        self._demo: tuple[str, str] | None = None
        self._log_lock = threading.Lock()
        self._ssl = tls.client_context()

    # -- lifecycle -------------------------------------------------------------------------
    def start_all(self) -> None:
        for app in self.store.apps().values():
            if self.store.resource(app["id"]) is not None:
                self.ensure(app["id"])

    def ensure(self, app_id: str, restart: bool = False) -> None:
        """Start the app's replica if none runs; with ``restart``, restart a running one."""
        with self._lock:
            sup = self._sups.get(app_id.lower())
            if sup is None or not sup.is_alive():
                sup = _Supervisor(self, app_id)
                self._sups[app_id.lower()] = sup
                sup.start()
                return
        if restart:
            sup.request_restart()

    def restart(self, app_id: str) -> None:
        self.ensure(app_id, restart=True)

    def remove(self, app_id: str) -> None:
        with self._lock:
            sup = self._sups.pop(app_id.lower(), None)
        if sup:
            sup.stop()
            sup.join(timeout=10)

    def stop_all(self) -> None:
        with self._lock:
            sups = list(self._sups.values())
            self._sups.clear()
        for s in sups:
            s.stop()
        for s in sups:
            s.join(timeout=10)

    def status(self, app_id: str) -> dict:
        with self._lock:
            sup = self._sups.get(app_id.lower())
        if sup is None:
            return {"state": "Stopped", "ready": False, "details": "no replica", "pid": None, "restart_count": 0,
                    "created": None, "revision": None, "started": False}
        return sup.status()

    # -- logs ------------------------------------------------------------------------------
    def log_path(self, app_id: str) -> Path:
        name = app_id.rstrip("/").rsplit("/", 1)[-1]
        folder = self.state_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}-{hashlib.sha256(app_id.lower().encode()).hexdigest()[:8]}.log"

    def rotate_log(self, app_id: str, max_bytes: int = 5 << 20) -> None:
        """Keep one previous log (``.log.1``) once the log passes ``max_bytes``."""
        path = self.log_path(app_id)
        with self._log_lock:
            if path.is_file() and path.stat().st_size > max_bytes:
                path.replace(path.with_suffix(".log.1"))

    def append_log(self, app_id: str, text: str) -> None:
        line = f"{now_iso()} [aitk-local] {text}\n"
        with self._log_lock, open(self.log_path(app_id), "a", encoding="utf-8") as f:
            f.write(line)

    # -- health ------------------------------------------------------------------------------
    def probe(self, port: int) -> bool:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=self._ssl, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    # -- preparing a run ---------------------------------------------------------------------
    def prepare(self, app_id: str, note, stopping=lambda: False) -> tuple[list[str], Path, dict[str, str]]:
        record = self.store.resource(app_id)
        if record is None:
            raise ReplicaError("the container app no longer exists")
        containers = (record["properties"].get("template") or {}).get("containers") or []
        if not containers:
            raise ReplicaError("the app's template has no container")
        c = containers[0]
        mount, why = self.handlers.share_folder(app_id)
        if mount is None:
            raise ReplicaError(why)
        app = self.store.app(app_id) or {}
        secrets = self.store.secrets(app_id).get("secrets") or {}
        revs = app.get("revisions") or []
        env = replica_env.base_env(self.state_dir, mount)
        for e in c.get("env") or []:
            if "secretRef" in e:
                if e["secretRef"] not in secrets:
                    raise ReplicaError(f"env {e['name']} refers to the missing secret {e['secretRef']!r}")
                env[e["name"]] = secrets[e["secretRef"]] or ""
            else:
                env[e["name"]] = map_mount(str(e.get("value", "")), mount)
        env.update({
            "AITK_HOST": "127.0.0.1", "AITK_PORT": str(app["port"]), "AITK_TORCH_THREADS": "1",
            "AITK_SSL_CERTFILE": str(self.tls.replica_cert), "AITK_SSL_KEYFILE": str(self.tls.replica_key),
            "CONTAINER_APP_NAME": record["name"], "CONTAINER_APP_REVISION": revs[-1]["name"] if revs else "",
            "CONTAINER_APP_REPLICA_NAME": replica_name(revs[-1]["name"] if revs else record["name"], app_id),
        })
        argv = build_command(list(c.get("command") or []) + list(c.get("args") or []), mount, note)
        self._choose_model(env, c, argv, mount, note, stopping)
        return argv, mount, env

    def _choose_model(self, env: dict[str, str], container: dict, argv: list[str], mount: Path, note,
                      stopping) -> None:
        original = next((str(e.get("value")) for e in container.get("env") or [] if e.get("name") == "AITK_MODEL_PATH"), None)
        if self.model_path:
            env["AITK_MODEL_PATH"] = str(self.model_path)
            if self.adapter_path:
                env["AITK_ADAPTER_PATH"] = str(self.adapter_path)
            elif not _adapters_exist(env.get("AITK_ADAPTER_PATH", "")):
                env.pop("AITK_ADAPTER_PATH", None)
                env["AITK_NO_ADAPTER"] = "true"
                note("no adapter given with --model: serving the base model alone")
            note(f"serving the model given to the local cloud: {self.model_path}")
            return
        if "AITK_MODEL_PATH" not in env or Path(env["AITK_MODEL_PATH"]).exists():
            if self.adapter_path:
                env["AITK_ADAPTER_PATH"] = str(self.adapter_path)
            return
        if "inference_server" in " ".join(argv) and not (mount / "inference_server").is_dir():
            return  # no code on the share yet: the run fails with that message; no model needed
        model_dir, adapter_dir = self.demo_model(note, stopping)
        note(f"no base model at {original}: serving the built-in demo model, whose output is random text")
        env["AITK_MODEL_PATH"] = model_dir
        env["AITK_ADAPTER_PATH"] = str(self.adapter_path) if self.adapter_path else adapter_dir
        # The demo model writes a few words per token in a millisecond: paced, its answers
        # stream at a speed a person can watch (and stop with Esc).
        env.setdefault("AITK_MIN_STEP_INTERVAL", DEMO_STEP_INTERVAL)

    def demo_model(self, note, stopping=lambda: False) -> tuple[str, str]:
        with self._demo_lock:
            if self._demo:
                return self._demo
            dest = self.demo_dir
            spec = importlib.util.find_spec("inference_server")
            if spec is None or not spec.submodule_search_locations:
                raise ReplicaError("no model on the share, and the demo model builder (inference_server) is not installed")
            root = str(Path(list(spec.submodule_search_locations)[0]).parent)
            note(f"preparing the demo model in {dest} (built once, then reused)")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env.update(PYTHONPATH=root, AITK_TORCH_THREADS="1", HF_HUB_OFFLINE="1")
            with open(self.log_path_demo(), "ab") as err, subprocess.Popen(
                    [sys.executable, "-m", "inference_server.demo_model", "--out", str(dest)], cwd=self.state_dir,
                    env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True) as proc:
                while proc.poll() is None:
                    if stopping():
                        kill_group(proc.pid)
                        raise ReplicaError("stopped while building the demo model")
                    time.sleep(0.1)
                out = proc.stdout.read().decode() if proc.stdout else ""
            if proc.returncode != 0:
                raise ReplicaError(f"building the demo model failed (exit {proc.returncode}); see {self.log_path_demo()}")
            try:
                info = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise ReplicaError("the demo model builder printed no result") from None
            self._demo = (info["model_dir"], info["adapter_dir"])
            return self._demo

    def log_path_demo(self) -> Path:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        return self.state_dir / "logs" / "demo-model-build.log"


def replica_name(revision: str, app_id: str) -> str:
    h = hashlib.sha256(app_id.lower().encode()).hexdigest()
    return f"{revision}-{h[:10]}-{h[10:15]}"
