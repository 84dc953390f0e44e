"""Pytest plugin: the local cloud (``aitk_tui.local``) for tests that drive the real SDK.

Fixtures
- ``local_cloud``: a started :class:`~aitk_tui.local.server.LocalCloud` with its state in
  ``tmp_path / "cloud"`` and ``op_delay_s=0.01`` (a full deployment of the real template
  takes well under a second); stopped after the test (no replica process left behind).
  Its demo model, if a replica needs one, is built once per session and shared.
- ``make_local_cloud(state_dir=None, **kw)``: start more clouds (another state folder, a
  restart on the same folder, ``model_path=``...); each is stopped after the test.
- ``local_factory``: ``ClientFactory(local_cloud.endpoints, local_cloud.credential())`` --
  real SDK clients over HTTPS with the local CA (fast polling and retry back-off).
- ``local_project``: a temp project folder with copies of the repo's ``infra/`` and
  ``inference_server/`` (no ``.aitk``); use ``Project(local_project)``.

Helpers (import from ``tests.fixtures_local``)
- ``LOCAL_SUBSCRIPTION_ID``
- ``real_parameters(root, api_key=TEST_API_KEY)``: the project's ARM parameters (nulls dropped)
  plus ``inferenceApiKey``, as a dict ``{name: {"value": ...}}``.
- ``deploy(factory, group, root, name="aitk-inference", **param_overrides)``: creates the
  group (location eastus), deploys ``infra/provision/inference.json`` and returns the outputs
  as ``{KEY: value}``.
- ``upload_folder(share_client, folder, prefix="")``: uploads a local folder tree to a share.
- ``STAND_IN_SERVER``: source of a tiny ``inference_server/__main__.py`` that serves
  ``/health`` over HTTPS as the real server is configured (``AITK_HOST/PORT/SSL_*``) and
  answers JSON about its environment (pid, cwd, key, model path); starts in ~0.1 s, for
  tests of the deploy/restart loop that do not need a model. ``upload_stand_in(share)``.
- ``wait_for(predicate, timeout=20, what=...)``: poll until truthy (returns the value).

Faults: ``local_cloud.inject(kind, count=1, path_contains=None, **opts)`` (kinds: throttle,
server_error, drop_connection, token_expired, latency, fail_resource; see
``aitk_tui.local.faults``).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Iterator
import os
from pathlib import Path
from typing import Any

import pytest

from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_API_KEY = "local-test-key-5b1e"
__all__ = ["LOCAL_SUBSCRIPTION_ID", "TEST_API_KEY", "STAND_IN_SERVER", "real_parameters", "deploy", "upload_folder",
           "upload_stand_in", "wait_for"]

STAND_IN_SERVER = textwrap.dedent('''
    import http.server, json, os, ssl, sys

    try:  # as the real server's start: run in the environment the container's deps step made
        from inference_server.deps import use_prepared_environment
    except ImportError:
        pass
    else:
        use_prepared_environment(sys.argv[1:])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "python": sys.executable,
                               "key": os.environ.get("INFERENCE_API_KEY"), "model": os.environ.get("AITK_MODEL_PATH"),
                               "hf_home": os.environ.get("HF_HOME")}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer((os.environ["AITK_HOST"], int(os.environ["AITK_PORT"])), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["AITK_SSL_CERTFILE"], os.environ["AITK_SSL_KEYFILE"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("stand-in serving", flush=True)
    server.serve_forever()
''')


def real_parameters(root: Path, api_key: str | None = TEST_API_KEY, **overrides: Any) -> dict[str, dict]:
    doc = json.loads((Path(root) / "infra" / "provision" / "inference.parameters.json").read_text())
    params = {k: v for k, v in doc["parameters"].items() if v.get("value") is not None}
    if api_key is not None:
        params["inferenceApiKey"] = {"value": api_key}
    for k, v in overrides.items():
        params[k] = {"value": v}
    return params


def deploy(factory, group: str, root: Path, name: str = "aitk-inference", location: str = "eastus",
           **overrides: Any) -> dict[str, Any]:
    factory.resources(LOCAL_SUBSCRIPTION_ID).resource_groups.create_or_update(group, {"location": location})
    template = json.loads((Path(root) / "infra" / "provision" / "inference.json").read_text())
    body = {"properties": {"mode": "Incremental", "template": template, "parameters": real_parameters(root, **overrides)}}
    result = factory.deployments(LOCAL_SUBSCRIPTION_ID).deployments.begin_create_or_update(group, name, body).result()
    return {k: v["value"] for k, v in result.properties.outputs.items()}


def upload_folder(share, folder: Path, prefix: str = "") -> int:
    """Upload ``folder`` into the share under ``prefix`` (directories created); returns files sent."""
    from azure.core.exceptions import ResourceExistsError

    folder = Path(folder)
    n = 0
    dirs = sorted({p.relative_to(folder) for p in folder.rglob("*") if p.is_dir() and "__pycache__" not in p.parts})
    base = [p for p in prefix.split("/") if p]
    for i in range(len(base)):
        try:
            share.create_directory("/".join(base[: i + 1]))
        except ResourceExistsError:
            pass
    for d in dirs:
        try:
            share.create_directory("/".join([*base, *d.parts]))
        except ResourceExistsError:
            pass
    for p in sorted(folder.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            share.get_file_client("/".join([*base, *p.relative_to(folder).parts])).upload_file(p.read_bytes())
            n += 1
    return n


def upload_stand_in(share) -> None:
    """Put the stand-in server on the share as ``inference_server/`` (replaces what is there),
    with the real ``requirements.txt``: the container command's pip step runs for real."""
    from azure.core.exceptions import ResourceExistsError

    try:
        share.create_directory("inference_server")
    except ResourceExistsError:
        pass
    share.get_file_client("inference_server/__init__.py").upload_file(b"")
    share.get_file_client("inference_server/__main__.py").upload_file(STAND_IN_SERVER.encode())
    for name in ("requirements.txt", "deps.py"):  # the container's dependency step
        share.get_file_client(f"inference_server/{name}").upload_file(
            (REPO_ROOT / "inference_server" / name).read_bytes())


def pid_alive(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie does not count)? Independent of the daemon's own check."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def make_share(factory, account: str = "acct1", share: str = "share1", group: str = "rg1"):
    """A storage account and file share on the local cloud; the ShareClient gets ``.key``."""
    factory.resources(LOCAL_SUBSCRIPTION_ID).resource_groups.create_or_update(group, {"location": "eastus"})
    storage = factory.storage(LOCAL_SUBSCRIPTION_ID)
    storage.storage_accounts.begin_create(group, account, {"location": "eastus", "sku": {"name": "Standard_LRS"},
                                                           "kind": "StorageV2"}).result()
    key = storage.storage_accounts.list_keys(group, account).as_dict()["keys"][0]["value"]
    client = factory.share(account, share, key)
    client.create_share()
    client.key = key
    return client


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session", autouse=True)
def _shared_replica_envs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of replica environments (keyed by the requirements' hash) for every local
    cloud of the session, across xdist workers: the containers' pip step (all satisfied by
    the machine's packages) is paid once, not by each test's cloud."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "aitk-replica-envs"
    old = os.environ.get("AITK_LOCAL_REPLICA_ENVS")
    os.environ["AITK_LOCAL_REPLICA_ENVS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("AITK_LOCAL_REPLICA_ENVS", None)
    else:
        os.environ["AITK_LOCAL_REPLICA_ENVS"] = old


@pytest.fixture(scope="session", autouse=True)
def _shared_deps_archives(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder of the deps step's archives (``inference_server.deps``) for every local cloud
    of the session, instead of each share's ``.aitk/deps``: its build is paid once. A test of
    the share's own folder deletes ``AITK_LOCAL_DEPS_SHARE`` (monkeypatch)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "aitk-deps-archives"
    old = os.environ.get("AITK_LOCAL_DEPS_SHARE")
    os.environ["AITK_LOCAL_DEPS_SHARE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("AITK_LOCAL_DEPS_SHARE", None)
    else:
        os.environ["AITK_LOCAL_DEPS_SHARE"] = old


@pytest.fixture(scope="session")
def _local_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "aitk-local-demo-model"


@pytest.fixture
def make_local_cloud(tmp_path: Path, _local_demo_dir: Path) -> Iterator:
    from aitk_tui.local.server import LocalCloud

    clouds: list[LocalCloud] = []

    def make(state_dir: Path | None = None, **kw: Any) -> LocalCloud:
        kw.setdefault("op_delay_s", 0.01)
        kw.setdefault("demo_dir", _local_demo_dir)
        cloud = LocalCloud(state_dir or tmp_path / "cloud", **kw)
        clouds.append(cloud)
        return cloud.start()

    yield make
    for c in reversed(clouds):
        c.stop()


@pytest.fixture
def local_cloud(make_local_cloud):
    return make_local_cloud()


@pytest.fixture
def local_factory(local_cloud):
    from aitk_tui.cloud.clients import ClientFactory

    return ClientFactory(local_cloud.endpoints, local_cloud.credential())


@pytest.fixture
def local_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "infra", root / "infra", ignore=ignore)
    shutil.copytree(REPO_ROOT / "inference_server", root / "inference_server", ignore=ignore)
    return root
