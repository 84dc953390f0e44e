"""Container-app replicas as local processes.

One supervisor thread per app runs the app's command the way the container would:
``/mount`` mapped to the share's folder (cwd, command, env values), ``pip install`` steps run
for real in an environment cached by the requirements' hash and ``python``/``python3``
resolving to it (:mod:`.replica_env`, :mod:`.replica_deps`), the app's env
vars and secrets, and ``AITK_HOST``/``AITK_PORT``/``AITK_SSL_*`` so the inference server
serves HTTPS on the app's stable port with a certificate from the local CA. A replica that
exits is restarted with exponential back-off (1 s .. 30 s) like a crash-looping
container; a revision restart restarts it at once. Output goes to one log file per app
(served by the log stream). Each replica runs in its own process group, recorded in the
store so that a later server can clean up after a crashed one.

The app's port belongs to its :class:`~.ingress.Ingress`; the replica serves on a private
port behind it. An app whose ``minReplicas`` is 0 scales to zero after ``idle_s`` seconds
with no request (state ``ScaledToZero``), and the next request through the ingress starts a
replica again while the ingress holds that request, as ACA does.

A replica that is not ready within its startup probe's limit (initialDelaySeconds +
periodSeconds x failureThreshold of the template's Startup probe; ACA's default TCP startup
probe allows 241 s) fails its revision's activation as ACA's does: the revision reports
``ActivationFailed`` with "Deployment Progress Deadline Exceeded. 0/1 replicas ready.", the
container is killed and restarted with back-off, and a replica that later becomes ready (or a
restart of the revision) clears it.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from .ingress import Ingress, idle_s_from_env, min_replicas
from .processes import kill_group, proc_start_time
from .resources import ResourceHandlers, free_port
from .store import Store, now_iso
from .system_log import SystemLog
from .tls import TlsFiles
from . import replica_env
from .replica_command import ReplicaError, adapters_exist, build_command, map_mount, uploaded_adapters

log = logging.getLogger("aitk_tui.local")
MAX_BACKOFF_S = 30.0
DEFAULT_STARTUP_LIMIT_S = 1 + 1 * 240  # ACA's default startup probe: initial delay 1 s, every 1 s, 240 failures
ACTIVATION_FAILED = "Deployment Progress Deadline Exceeded. 0/1 replicas ready."  # ACA's words


def startup_limit_s(record: dict | None) -> float:
    """Seconds a new replica has to become ready: its Startup probe's initialDelaySeconds +
    periodSeconds x failureThreshold (the spec's defaults: 0, 10, 3), or ACA's default probe's."""
    containers = (((record or {}).get("properties") or {}).get("template") or {}).get("containers") or [{}]
    probes = containers[0].get("probes") or [] if isinstance(containers[0], dict) else []
    startup = next((p for p in probes if isinstance(p, dict) and str(p.get("type", "")).lower() == "startup"), None)
    if startup is None:
        return float(DEFAULT_STARTUP_LIMIT_S)

    def num(key: str, default: float) -> float:
        value = startup.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    return num("initialDelaySeconds", 0) + num("periodSeconds", 10) * num("failureThreshold", 3)


class _Supervisor(threading.Thread):
    def __init__(self, mgr: "ReplicaManager", app_id: str) -> None:
        super().__init__(name=f"aitk-replica-{app_id.rsplit('/', 1)[-1]}", daemon=True)
        self.mgr, self.app_id = mgr, app_id
        self.wake = threading.Event()
        self.restart_requested = False
        self.stopping = False
        self.proc: subprocess.Popen | None = None
        self.state = "Activating"  # Activating | Running | Failed | Stopped | ScaledToZero
        self.ready = False
        self.ever_ready = False
        self.details = "starting"
        self.ready_at_exit = False
        self.restart_count = 0
        self.created = now_iso()
        self.revision: str | None = None
        self.port: int | None = None  # the process's private port, behind the ingress
        self.listening = False  # the process answers HTTP on it (loading or ready)
        self.asleep = False  # scaled to zero: no process until a request comes
        self.wake_for_request = False
        self.ready_since = time.monotonic()
        self.scaled_down_after: float | None = None
        self._wake_lock = threading.Lock()
        self.activation_since = time.monotonic()  # a new replica was asked for (start, wake, restart)
        self.activated = False  # a replica of this activation has been ready
        self.activation_failed: str | None = None  # ACA's runningStateDetails once the deadline passed

    def _begin_activation(self) -> None:
        self.activation_since, self.activated, self.activation_failed = time.monotonic(), False, None

    def activation_overdue(self) -> bool:
        """True once (then recorded) when no replica became ready within the startup probe's limit."""
        if self.activated or self.activation_failed is not None:
            return False
        limit = startup_limit_s(self.mgr.store.resource(self.app_id))
        if time.monotonic() - self.activation_since < limit:
            return False
        self.activation_failed = ACTIVATION_FAILED
        self.note(f"no replica became ready within the startup probe's {limit:.0f} s: activation failed")
        self.event("ActivationFailed", f"Revision activation failed: {ACTIVATION_FAILED} The startup probe "
                   f"did not pass within {limit:.0f} s", warning=True)
        return True

    def note(self, text: str) -> None:
        self.mgr.append_log(self.app_id, text)

    def event(self, reason: str, text: str, warning: bool = False) -> None:
        self.mgr.record_system_event(self.app_id, text, reason=reason, warning=warning)

    def request_restart(self) -> None:
        self.restart_requested = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def backend_port(self, deadline: float, client_alive) -> int | None:
        """For the ingress: the private port once the replica answers there, waking it if it
        is scaled to zero; None when the app is stopped, the replica crash-loops, or time is up."""
        while time.monotonic() < deadline and not self.stopping and client_alive():
            if self.asleep:
                with self._wake_lock:
                    if self.asleep and not self.wake_for_request:
                        self.wake_for_request = True
                        self.wake.set()
            elif self.state in ("Failed", "Stopped"):
                return None
            port, proc = self.port, self.proc
            if port and self.listening and proc is not None and proc.poll() is None:
                return port
            time.sleep(0.05)
        return None

    def _idle_s(self) -> float | None:
        """Seconds since the last request, when this replica may scale to zero (else None)."""
        if min_replicas(self.mgr.store.resource(self.app_id)) != 0:
            return None  # keep-warm: never scaled down
        ingress = self.mgr.ingress(self.app_id)
        if ingress is None or ingress.busy():
            return None
        return time.monotonic() - max(ingress.idle_since(), self.ready_since)

    def run(self) -> None:
        backoff = 0.0
        first = True
        while not self.stopping:
            app = self.mgr.store.app(self.app_id) or {}
            if app.get("stopped"):
                self.state, self.ready, self.details = "Stopped", False, "the app is stopped"
                self.asleep = self.wake_for_request = False
                self.wake.wait()
                self.wake.clear()
                continue
            if self.asleep:
                self.state, self.ready, self.details = "ScaledToZero", False, "scaled to zero: a request starts a replica"
                self.wake.wait()
                self.wake.clear()
                if self.stopping or not (self.wake_for_request or self.restart_requested):
                    continue
                if self.wake_for_request:
                    self.mgr.scale_event(self.app_id, "ScalingUp", "starting a replica for an incoming request")
                with self._wake_lock:
                    self.asleep = self.wake_for_request = False
                first, self.restart_count = True, 0  # a new replica, not a restart of the old one
            if self.restart_requested:  # a revision restart makes a new replica (restart count 0), as on ACA
                first, self.restart_count = True, 0
            if first:
                self._begin_activation()
            else:
                self.restart_count += 1
            first = False
            self.restart_requested = False
            self.wake.clear()
            self.state, self.ready, self.created = "Activating", False, now_iso()
            self.event("AssigningReplica", "Replica has been scheduled to run on this machine (the local cloud)")
            code = self._run_once()
            if self.stopping:
                break
            if self.scaled_down_after is not None:
                idle, self.scaled_down_after = self.scaled_down_after, None
                self.mgr.scale_event(self.app_id, "ScaledToZero",
                                     f"scaled to zero after {idle:.0f} s idle (min replicas 0)")
                self.asleep, backoff = True, 0.0
                continue
            if self.restart_requested:
                backoff = 0.0
                self.event("ReplicaRestarting", "Stopped the replica: its revision was restarted")
                continue
            backoff = 1.0 if self.ever_ready and self.ready_at_exit else min(max(backoff * 2, 1.0), MAX_BACKOFF_S)
            self.state, self.ready = "Failed", False
            self.activation_overdue()  # a replica crash-looping since its start fails the activation too
            self.details = f"{self.details}; restarting in {backoff:.0f} s"
            self.note(f"replica {'exited with code ' + str(code) if code is not None else 'could not start'}; "
                      f"restarting in {backoff:.0f} s")
            if code is not None:
                self.event("ContainerTerminated", f"Container was terminated with exit code '{code}' and reason "
                           f"'ProcessExited'; back-off restarting it in {backoff:.0f} s (restart {self.restart_count + 1})",
                           warning=True)
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
            self.event("ContainerCreateFailed", f"The container could not be created: {e}", warning=True)
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
            self.event("ContainerCreateFailed", f"The container could not be started: {e}", warning=True)
            return None
        finally:
            logf.close()
        proc = self.proc
        self.mgr.store.update_app(self.app_id, pid=proc.pid, pid_start=proc_start_time(proc.pid))
        self.event("ContainerStarted", f"Started container (process {proc.pid})")
        self.state, self.details = "Activating", "waiting for /health"
        port = self.port = int(env["AITK_PORT"])
        idle_limit = self.mgr.idle_s
        failing_since, reported = time.monotonic(), 0
        while proc.poll() is None and not self.stopping and not self.restart_requested:
            status = self.mgr.probe_status(port)
            ok = status == 200
            self.listening = status is not None
            if ok:
                self.activated, self.activation_failed = True, None
            elif self.activation_overdue():
                self.details = "the startup probe did not pass in time"
                break  # the startup probe gave up: the container is killed and restarted
            if ok and not self.ready:
                self.ready_since = time.monotonic()
                self.note(f"replica is ready on https://127.0.0.1:{env.get('AITK_INGRESS_PORT', port)}")
                self.event("ReplicaReady", "Replica is ready: the probe GET /health answered 200")
                self.mgr.store.update_app(self.app_id, ready_revision=self.revision)
                self.ever_ready = True
            elif not ok and self.ready:
                failing_since, reported = time.monotonic(), 0
                self.event("ProbeFailed", "Probe of Readiness failed: GET /health no longer answers 200", warning=True)
            elif not ok:
                # Like ACA's repeated ProbeFailed warnings, but one per 10 s, not one per probe.
                waited = int(time.monotonic() - failing_since)
                if waited // 10 > reported:
                    reported = waited // 10
                    self.event("ProbeFailed", f"Probe of StartUp failed: GET /health has not answered 200 for "
                               f"{reported * 10} s", warning=True)
            self.ready = ok
            self.state = "Running" if ok else "Activating"
            self.details = "the replica is running" if ok else "waiting for /health"
            idle = self._idle_s() if ok else None
            if idle is not None and idle >= idle_limit:
                self.scaled_down_after = idle
                break
            self.wake.wait(max(0.1, min(1.0, idle_limit / 4)) if ok else 0.3)  # a tiny idle must not spin
        self.listening = False
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
                "started": self.proc is not None and self.proc.poll() is None,
                "activated": self.activated, "activation_failed": self.activation_failed}


#: Seconds per generated token for the built-in demo model (about 30 words a second).
DEMO_STEP_INTERVAL = "0.06"


class ReplicaManager:
    def __init__(self, state_dir: Path, store: Store, handlers: ResourceHandlers, tls: TlsFiles, *,
                 model_path: Path | None = None, adapter_path: Path | None = None,
                 demo_dir: Path | None = None, idle_s: float | None = None) -> None:
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
        self._system = SystemLog()
        self._ssl = tls.client_context()
        self.idle_s = idle_s if idle_s is not None else idle_s_from_env()
        self._ingresses: dict[str, Ingress] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start_all(self) -> None:
        for app in self.store.apps().values():
            if self.store.resource(app["id"]) is not None:
                self.ensure(app["id"])

    def ensure(self, app_id: str, restart: bool = False) -> None:
        """Start the app's replica if none runs; with ``restart``, restart a running one."""
        with self._lock:
            self._ensure_ingress(app_id)
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

    def _ensure_ingress(self, app_id: str) -> None:
        key = app_id.lower()
        port = (self.store.app(app_id) or {}).get("port")
        if key in self._ingresses or not port:
            return
        name = app_id.rstrip("/").rsplit("/", 1)[-1]
        self._ingresses[key] = Ingress(name, int(port), lambda: self._sups.get(key),
                                       lambda text: self.append_log(app_id, text)).start()

    def ingress(self, app_id: str) -> Ingress | None:
        return self._ingresses.get(app_id.lower())

    def scale_event(self, app_id: str, reason: str, text: str) -> None:
        """A scale event: in the replica's log (what the chat shows while waking) and the system log."""
        self.append_log(app_id, text)
        self.record_system_event(app_id, text[:1].upper() + text[1:], reason=reason)

    def remove(self, app_id: str) -> None:
        with self._lock:
            sup = self._sups.pop(app_id.lower(), None)
            ingress = self._ingresses.pop(app_id.lower(), None)
        if sup:
            sup.stop()
            sup.join(timeout=10)
        if ingress:
            ingress.close()

    def stop_all(self) -> None:
        with self._lock:
            sups = list(self._sups.values())
            self._sups.clear()
            ingresses = list(self._ingresses.values())
            self._ingresses.clear()
        for s in sups:
            s.stop()
        for i in ingresses:
            i.close()
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

    def system_log_path(self, app_id: str) -> Path:
        return self.log_path(app_id).with_suffix(".system.jsonl")

    def record_system_event(self, app_id: str, text: str, *, reason: str = "Info", warning: bool = False) -> None:
        """One line of the app's system log (ACA's event stream): what the platform did, e.g.
        ``record_system_event(app_id, "Scaled to 0 replicas after 300 s idle", reason="ScaledToZero")``."""
        record = self.store.resource(app_id)
        revs = (self.store.app(app_id) or {}).get("revisions") or []
        revision = revs[-1]["name"] if revs else ""
        self._system.append(self.system_log_path(app_id), app=record["name"] if record else app_id.rsplit("/", 1)[-1],
                            revision=revision, replica=replica_name(revision, app_id) if revision else "",
                            reason=reason, msg=text, warning=warning)

    # -- health ------------------------------------------------------------------------------
    def probe(self, port: int) -> bool:
        return self.probe_status(port) == 200

    def probe_status(self, port: int) -> int | None:
        """The HTTP status of GET /health on the replica's own port; None when it does not answer."""
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=self._ssl, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
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
        env = replica_env.base_env(self.state_dir, mount, app_id)
        for e in c.get("env") or []:
            if "secretRef" in e:
                if e["secretRef"] not in secrets:
                    raise ReplicaError(f"env {e['name']} refers to the missing secret {e['secretRef']!r}")
                env[e["name"]] = secrets[e["secretRef"]] or ""
            else:
                env[e["name"]] = map_mount(str(e.get("value", "")), mount)
        env.update({
            # the app's port is its ingress's; the replica serves behind it on a port of its own
            "AITK_HOST": "127.0.0.1", "AITK_PORT": str(free_port()), "AITK_INGRESS_PORT": str(app["port"]),
            "AITK_TORCH_THREADS": "1",
            # The app's GPU profile runs here on the CPU: the server must not refuse for want of CUDA.
            "AITK_REQUIRE_GPU": "false",
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
            elif not adapters_exist(env.get("AITK_ADAPTER_PATH", "")):
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
        if not self.adapter_path:
            # An adapter of the user's on the share (`aitk models upload` without --model) is
            # never swapped for the demo's: the demo base cannot serve it, and serving the demo
            # adapter instead would answer as if it were theirs.
            given = next((str(e.get("value")) for e in container.get("env") or []
                          if e.get("name") == "AITK_ADAPTER_PATH"), "")
            theirs = uploaded_adapters(given, mount)
            if theirs:
                raise ReplicaError(f"the adapter at {theirs[0]} has no base model: no model at {original}; "
                                   "upload it with aitk models upload --adapter DIR --model BASE_DIR, then "
                                   "provision again")
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
