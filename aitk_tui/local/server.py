"""``LocalCloud``: Azure's REST surfaces on https://127.0.0.1 for the real SDK clients.

One HTTPS port serves ARM (``/subscriptions/...``, ``/tenants``), the Azure Files data
plane (``/<account>/<share>/...``: for 127.0.0.1 the SDK takes the account from the first
path segment) and the local cloud's own routes under ``/_local/`` (``info``, ``faults``,
``logstream``). State lives under ``state_dir`` (see :mod:`.store`), so the cloud survives
a restart; a deployment that was running resumes, and app replicas start again.

Use in-process (tests)::

    with LocalCloud(tmp_path / "cloud", op_delay_s=0.01) as cloud:
        factory = ClientFactory(cloud.endpoints, cloud.credential())

or as a detached server through :mod:`.daemon`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from ..endpoints import CloudEndpoints
from ..errors import AitkError
from .apps import AppsApi
from .arm import ArmApi, not_served
from .credential import LOCAL_TENANT_ID, LocalCredential, TokenVerifier
from .deployments import DeploymentEngine
from .faults import Fault, Faults
from .files import FilesService, error_response
from .httpd import DropConnection, HttpError, HttpsServer, Request, Response, json_response
from .recorder import Recorder
from .processes import kill_recorded
from .replicas import ReplicaManager
from .resources import ResourceHandlers
from .store import Store
from .tls import ensure_tls

log = logging.getLogger("aitk_tui.local")
_ARM_ROOTS = ("subscriptions", "tenants", "providers")
# Fast polling for the local cloud (real Azure keeps the SDK defaults).
POLLING_INTERVAL_S = 0.1
RETRY_BACKOFF_FACTOR = 0.05


def make_endpoints(url: str, ca_bundle: str) -> CloudEndpoints:
    return CloudEndpoints(name="local", arm_url=url, files_account_url=url + "/{account}", ca_bundle=ca_bundle,
                          polling_interval=POLLING_INTERVAL_S, retry_backoff_factor=RETRY_BACKOFF_FACTOR)


def _arm_error(e: HttpError) -> Response:
    headers = dict(e.headers)
    headers.setdefault("x-ms-failure-cause", "gateway" if e.status >= 500 else "service")
    return json_response(e.status, {"error": e.error_body()}, headers)


class LocalCloud:
    """The local cloud in this process: ``start()``, use ``endpoints``/``credential()``, ``stop()``."""

    def __init__(self, state_dir: Path | str, *, model_path: Path | str | None = None,
                 adapter_path: Path | str | None = None, op_delay_s: float = 0.3, port: int = 0,
                 host: str = "127.0.0.1", demo_dir: Path | str | None = None,
                 idle_s: float | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.idle_s = idle_s  # scale-to-zero idle period; None: $AITK_LOCAL_IDLE_S, else ACA's 300 s
        self.model_path = Path(model_path).resolve() if model_path else None
        self.adapter_path = Path(adapter_path).resolve() if adapter_path else None
        self.op_delay_s = op_delay_s
        # Where the demo model is built on first use (tests share one folder per session).
        self.demo_dir = Path(demo_dir).resolve() if demo_dir else self.state_dir / "demo-model"
        self._want_port = port
        self.host = host
        self.faults = Faults()
        self.recorder = Recorder.from_env()
        self._server: HttpsServer | None = None
        self._stopping = threading.Event()

    # -- public API ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the local cloud is not started")
        return self._server.port

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_bundle(self) -> str:
        return str(self.state_dir / "tls" / "ca.pem")

    @property
    def endpoints(self) -> CloudEndpoints:
        return make_endpoints(self.url, self.ca_bundle)

    @property
    def files_root(self) -> Path:
        return self.state_dir / "files"

    def credential(self) -> LocalCredential:
        return LocalCredential(self.state_dir)

    def inject(self, kind: str, count: int = 1, path_contains: str | None = None, **opts: Any) -> dict:
        """Queue a fault (see :mod:`.faults` for the kinds and options); returns it as JSON."""
        return self.faults.inject(kind, count, path_contains, **opts).to_json()

    def clear_faults(self) -> int:
        return self.faults.clear()

    def log_path(self, app_id: str) -> Path:
        """The log file of a container app's replica."""
        return self.replicas.log_path(app_id)

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "LocalCloud":
        if self._server is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self._lock_file = open(self.state_dir / "cloud.lock", "w")
        try:  # one server per state folder, or two would fight over cloud.json
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise AitkError(f"Another local cloud already serves {self.state_dir}.",
                            "stop it first (python -m aitk_tui.local stop --state-dir ...)") from None
        try:
            self._stopping.clear()
            self.tls = ensure_tls(self.state_dir)
            self.verifier = TokenVerifier(self.state_dir)
            self.store = Store(self.state_dir)
            found = kill_recorded(self.store)
            if found:
                log.info("cleaned up %d replica process(es) left by a previous server", found)
            self.files_root.mkdir(exist_ok=True)
            self.handlers = ResourceHandlers(self.store, self.files_root, lambda: self.url)
            self.replicas = ReplicaManager(self.state_dir, self.store, self.handlers, self.tls,
                                           model_path=self.model_path, adapter_path=self.adapter_path,
                                           demo_dir=self.demo_dir, idle_s=self.idle_s)
            self.handlers.on_app_changed = self.replicas.ensure
            self.handlers.on_app_deleted = self.replicas.remove
            self.engine = DeploymentEngine(self.store, self.handlers, self.faults, op_delay_s=self.op_delay_s,
                                           tenant_id=LOCAL_TENANT_ID)
            self.apps = AppsApi(self.store, self.handlers, self.replicas, lambda: self.url, self._stopping)
            self.arm = ArmApi(self.store, self.handlers, self.engine, self.apps, lambda: self.url)
            self.apps.async_result = self.arm.async_result
            self.files = FilesService(self.files_root, self.state_dir / "files-meta", self.handlers.storage_keys,
                                      lambda t: self.verifier.check(t) is None, lambda: self.url,
                                      self.handlers.shared_key_allowed)
            self._server = self._bind()
            self.store.set("port", self._server.port)
            self._server.start()
        except BaseException:
            self._unlock()
            raise
        self.engine.resume_all()
        self.replicas.start_all()
        log.info("local cloud serving %s (state in %s)", self.url, self.state_dir)
        return self

    def _bind(self) -> HttpsServer:
        ctx = self.tls.server_context()
        remembered = self.store.get("port")
        for port in ([self._want_port] if self._want_port else [remembered or 0, 0]):
            try:
                return HttpsServer(self.host, port, ctx, self._app)
            except OSError:
                if port == 0 or self._want_port:
                    raise
        raise OSError("no port")

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self.engine.stop()
        self._server.stop()
        self.replicas.stop_all()
        self._server = None
        self._unlock()

    def _unlock(self) -> None:
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    # -- request handling -----------------------------------------------------------------------
    def _app(self, req: Request) -> Response:
        resp = self._answer(req)
        if self.recorder is not None and (req.segments[:1] or [""])[0].lower() in _ARM_ROOTS:
            self.recorder.record(req, resp)  # AITK_LOCAL_RECORD: the recorded-traffic test's input
        return resp

    def _answer(self, req: Request) -> Response:
        segs = req.segments
        first = segs[0].lower() if segs else ""
        is_arm = first in _ARM_ROOTS
        try:
            if first == "_local":
                return self._local(req, segs[1:])
            target = req.raw_path + (f"?{req.raw_query}" if req.raw_query else "")
            fault = self.faults.take_http(target, arm=is_arm)
            if fault is not None:
                resp = self._fault(fault, req, is_arm)
                if resp is not None:
                    return resp
            if not segs:
                raise HttpError(404, "NotFound", "Nothing is served at /.")
            if is_arm:
                self._authorize(req)
                resp = self.arm.handle(req)
                resp.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
                return resp
            return self.files.handle(req)
        except DropConnection:
            raise
        except HttpError as e:
            return _arm_error(e) if is_arm or first == "_local" else error_response(e, req.method == "HEAD")
        except Exception as e:  # noqa: BLE001 - 501 is not retried by the SDK; the detail finds the bug
            log.error("local cloud failed on %s %s\n%s", req.method, req.raw_path, traceback.format_exc())
            err = HttpError(501, "LocalCloudInternalError", f"{type(e).__name__}: {e} (on {req.method} {req.raw_path})")
            return _arm_error(err) if is_arm else error_response(err, req.method == "HEAD")

    def _bearer(self, req: Request) -> str | None:
        auth = req.header("Authorization") or ""
        return auth[7:].strip() if auth[:7].lower() == "bearer " else None

    def _authorize(self, req: Request) -> None:
        token = self._bearer(req)
        if self.verifier.is_revoked(token):  # CAE: a revoked token gets the claims challenge again
            raise self._claims_challenge(token)
        why = self.verifier.check(token)
        if why:
            raise HttpError(401, "InvalidAuthenticationToken", why, {
                "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{LOCAL_TENANT_ID}", '
                                    'error="invalid_token", error_description="' + why.replace('"', "'") + '"'})

    def _fault(self, fault: Fault, req: Request, is_arm: bool) -> Response | None:
        kind = fault.kind
        log.info("fault %s on %s %s", kind, req.method, req.raw_path)
        if kind == "drop_connection":
            raise DropConnection()
        if kind == "latency":
            time.sleep(float(fault.option("delay_s", 1.0)))
            return None
        if kind == "throttle":  # ARM throttles with 429; Storage with 503 ServerBusy (it never sends 429)
            status = int(fault.option("status", 429 if is_arm else 503))
            err = HttpError(status, "TooManyRequests" if status == 429 else "ServerBusy",
                            "The request was throttled (fault injected by the local cloud).",
                            {"Retry-After": str(fault.option("retry_after", 1))})
        elif kind == "server_error":
            status = int(fault.option("status", 500))
            err = HttpError(status, "InternalServerError" if status == 500 else "ServiceUnavailable",
                            f"The server failed with {status} (fault injected by the local cloud).")
        else:  # token_expired: a CAE claims challenge; the token shown is revoked
            err = self._claims_challenge(self._bearer(req))
        return _arm_error(err) if is_arm else error_response(err, req.method == "HEAD")

    def _claims_challenge(self, token: str | None) -> HttpError:
        if token:
            self.verifier.revoke(token)
        claims = json.dumps({"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}})
        b64 = base64.urlsafe_b64encode(claims.encode()).decode()
        return HttpError(401, "InvalidAuthenticationToken", "The access token was revoked: new claims are required "
                         "(Continuous Access Evaluation, fault injected by the local cloud).", {
                             "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/'
                                                 f'{LOCAL_TENANT_ID}", error="insufficient_claims", claims="{b64}"'})

    def _local(self, req: Request, segs: list[str]) -> Response:
        low = [s.lower() for s in segs]
        if low == ["info"] and req.method == "GET":
            self._authorize(req)  # pid and paths are for holders of this cloud's key only
            return json_response(200, {"pid": os.getpid(), "url": self.url, "state_dir": str(self.state_dir),
                                       "ca_bundle": self.ca_bundle, "model_path": str(self.model_path or ""),
                                       "adapter_path": str(self.adapter_path or "")})
        if low[:1] == ["logstream"] and req.method == "GET":
            return self.apps.log_stream(req)
        if low[:1] == ["eventstream"] and req.method == "GET":
            return self.apps.event_stream(req)
        if low == ["faults"]:
            self._authorize(req)
            if req.method == "GET":
                return json_response(200, {"value": self.faults.list()})
            if req.method == "DELETE":
                return json_response(200, {"cleared": self.faults.clear()})
            if req.method == "POST":
                body = req.json()
                try:
                    fault = self.inject(body.pop("kind", ""), body.pop("count", 1), body.pop("path_contains", None), **body)
                except (ValueError, TypeError) as e:
                    raise HttpError(400, "InvalidFault", str(e)) from None
                return json_response(201, fault)
        raise not_served(req)
