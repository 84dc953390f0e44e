"""The container's pip step runs for real on the local cloud, as on Azure.

Both commands: the template's (``python3 -m inference_server.deps inference_server/requirements.txt``,
an environment archived on the share and extracted by an unchanged start) and AI Toolkit's
plain ``pip install -r`` line (an environment cached by the local cloud).

A line appended to the project's ``inference_server/requirements.txt``:
- a package that does not exist fails the replica with pip's own error, the status says
  why, and the deploy ends unhealthy with that reason;
- a valid package (a wheel built here, found with ``--find-links``: no network) is
  installed into the replica's environment and importable there, a pinned version
  different from aitk's shadows aitk's, and an unchanged requirements file skips pip on
  the next start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from aitk_tui.events import Done, Failed
from tests.backend.deploy_helpers import deploy_all, provisioned, share_dir
from tests.fixtures_local import STAND_IN_SERVER, wait_for


def build_wheel(folder: Path, name: str, version: str, module: str, source: str) -> Path:
    """A pure-python wheel written by hand (a wheel is a zip with METADATA, WHEEL, RECORD)."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {f"{module}/__init__.py": source.encode(),
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: aitk-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for path, data in files.items()] + [f"{dist}.dist-info/RECORD,,"]
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_, data in files.items():
            zf.writestr(name_, data)
    return path


def _append(root: Path, *lines: str) -> None:
    req = root / "inference_server" / "requirements.txt"
    req.write_text(req.read_text() + "".join(f"{line}\n" for line in lines))


DEPS_STEP = "python3 -m inference_server.deps inference_server/requirements.txt"
PIP_LINE = "pip install -r inference_server/requirements.txt"  # AI Toolkit's projects
# What each command says when an unchanged requirements file skips pip, and the marker of
# the environment the server runs in.
SKIPPED = {DEPS_STEP: "unchanged, environment", PIP_LINE: "skipped, the requirements did not change"}
MARKER = {DEPS_STEP: "aitk-deps.json", PIP_LINE: "aitk-env.json"}


def _use_command(root: Path, step: str) -> None:
    path = root / "infra" / "provision" / "inference.parameters.json"
    doc = json.loads(path.read_text())
    doc["parameters"]["defaultCommands"]["value"] = ["cd /mount", step, "python3 -m inference_server"]
    path.write_text(json.dumps(doc, indent=2))


@pytest.fixture(params=[DEPS_STEP, PIP_LINE], ids=["deps-step", "pip-line"])
def step(request, local_project, monkeypatch) -> str:
    """The project's dependency step; the deps step's archives on the share itself (not the
    session's shared folder)."""
    monkeypatch.delenv("AITK_LOCAL_DEPS_SHARE", raising=False)
    _use_command(Path(local_project), request.param)
    return request.param


def test_the_template_runs_the_deps_step():
    from tests.fixtures_local import REPO_ROOT

    for path in ("infra/provision/inference.parameters.json",
                 "aitk_tui/templates/infra/provision/inference.parameters.json"):
        commands = json.loads((REPO_ROOT / path).read_text())["parameters"]["defaultCommands"]["value"]
        assert commands == ["cd /mount", DEPS_STEP, "python3 -m inference_server"], path


async def test_a_requirement_that_does_not_exist_fails_the_deploy_with_pips_error(session, local_cloud, local_project,
                                                                                  tmp_path, step):
    root = Path(local_project)
    # --no-index: pip looks in the (empty) wheel folder only, so the test needs no network;
    # everything else in requirements.txt is already satisfied by the machine's packages.
    (tmp_path / "wheels").mkdir()
    _append(root, "--no-index", f"--find-links {tmp_path / 'wheels'}", "aitk-no-such-package==1.0")
    config = await provisioned(session)
    events = await deploy_all(session, config, restart=True, wait=True, health_timeout_s=120)
    failed = events[-1]
    assert isinstance(failed, Failed), failed
    assert failed.message.startswith("The replica keeps restarting")
    assert "pip could not install the requirements: No matching distribution found for aitk-no-such-package==1.0" \
        in failed.message
    # pip's own error in the replica's log, and `aitk status`'s reason
    app = local_cloud.store.resources(full_type="Microsoft.App/containerApps")[0]
    log = local_cloud.log_path(app["id"]).read_text()
    assert "ERROR: No matching distribution found for aitk-no-such-package==1.0" in log
    st = await session.endpoint_status(config)
    assert st.failure_reason and "No matching distribution found for aitk-no-such-package==1.0" in st.failure_reason
    assert all(not r.ready for r in st.replicas)


_REPORTING_SERVER = STAND_IN_SERVER.replace(
    '"hf_home": os.environ.get("HF_HOME")',
    '"hf_home": os.environ.get("HF_HOME"), "prefix": sys.prefix, '
    '"tiny": __import__("aitk_tiny_pkg").VERSION, "tiny_file": __import__("aitk_tiny_pkg").__file__, '
    '"pyte": __import__("pyte").__version__, "transformers": __import__("transformers").__version__')


async def test_a_valid_requirement_is_installed_and_importable_in_the_replica(session, local_cloud, local_project,
                                                                              tmp_path, step):
    import importlib.metadata

    root = Path(local_project)
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "aitk-tiny-pkg", "0.1.0", "aitk_tiny_pkg", 'VERSION = "0.1.0"\n')
    # pyte is one of aitk's own packages: the replica must import the pinned one instead.
    build_wheel(wheels, "pyte", "0.0.1", "pyte", '__version__ = "0.0.1-replica"\n')
    assert importlib.metadata.version("pyte") != "0.0.1"
    _append(root, "--no-index", f"--find-links {wheels}", "aitk-tiny-pkg==0.1.0", "pyte==0.0.1")
    (root / "inference_server" / "__main__.py").write_text(_REPORTING_SERVER)
    config = await provisioned(session)
    events = await deploy_all(session, config, restart=True, wait=True, health_timeout_s=120)
    assert isinstance(events[-1], Done), events[-1]

    import httpx

    from aitk_tui.cloud.health import tls_verify

    def report() -> dict:
        return json.loads(httpx.get(config.endpoint_url + "/", verify=tls_verify(session), timeout=10).text)

    body = report()
    env = Path(body["prefix"])
    assert body["tiny"] == "0.1.0" and Path(body["tiny_file"]).is_relative_to(env)
    assert body["pyte"] == "0.0.1-replica"  # the pinned version, not aitk's
    import transformers

    assert body["transformers"] == transformers.__version__  # the machine's torch stack, as the image's
    assert (env / MARKER[step]).is_file()
    archives = sorted(p.parent for p in (share_dir(local_cloud, config) / ".aitk" / "deps").glob("*/manifest.json"))
    assert len(archives) == (1 if step == DEPS_STEP else 0)  # on the share, beside the code

    # Unchanged requirements: the next start skips pip (the deps step: extracts the archive
    # onto the new container's empty disk) and the server imports the same pinned versions.
    app = local_cloud.store.resources(full_type="Microsoft.App/containerApps")[0]
    log_path = local_cloud.log_path(app["id"])
    before = log_path.read_text().count(SKIPPED[step])
    installs = log_path.read_text().count("Successfully installed")
    local_cloud.replicas.restart(app["id"])
    wait_for(lambda: log_path.read_text().count(SKIPPED[step]) > before, timeout=60, what="a start that skips pip")
    again = wait_for(lambda: _try(report), timeout=60, what="the replica back")
    assert (again["tiny"], again["pyte"]) == ("0.1.0", "0.0.1-replica")
    assert again["prefix"] == str(env) and log_path.read_text().count("Successfully installed") == installs
    if step == DEPS_STEP:
        assert f"extracted from {archives[0]}" in log_path.read_text()


def _try(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - not up yet
        return None


def test_the_status_reads_pips_own_error_lines():
    from aitk_tui.cloud.endpoint_status import console_cause

    lead = "pip could not install the requirements: "
    assert console_cause([
        "Collecting aitk-no-such-package==1.0",
        "ERROR: Could not find a version that satisfies the requirement aitk-no-such-package==1.0 (from versions: none)",
        "ERROR: No matching distribution found for aitk-no-such-package==1.0",
        "2026-12-07T10:00:00.000000Z [aitk-local] replica exited with code 1; restarting in 2 s",
    ]) == lead + "No matching distribution found for aitk-no-such-package==1.0"
    assert console_cause([
        "ERROR: Cannot install accelerate==1.16.0 and torch==2.4.0 because these package versions have conflicting "
        "dependencies.",
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/",
    ]) == lead + ("Cannot install accelerate==1.16.0 and torch==2.4.0 because these package versions have "
                  "conflicting dependencies.")
    assert console_cause(["ERROR: Invalid requirement: 'fastapi=0.1': Expected end or semicolon"]) == \
        lead + "Invalid requirement: 'fastapi=0.1': Expected end or semicolon"
