"""``python -m inference_server`` as a process: flags and env, refusals, exit codes, logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from inference_server.__main__ import build_parser
from inference_server.settings import ServerSettings
from tests.fixtures_model import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AITK_") and k not in ("INFERENCE_API_KEY",)}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", AITK_TORCH_THREADS="1", **extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inference_server", *args], capture_output=True, text=True,
                          env=env or clean_env(), timeout=timeout, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_documents_every_flag_with_its_environment_variable():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag, env in [("--model", "AITK_MODEL_PATH"), ("--adapter", "AITK_ADAPTER_PATH"),
                      ("--adapter-name", "AITK_ADAPTER_NAME"), ("--host", "AITK_HOST"), ("--port", "AITK_PORT"),
                      ("--no-merge", "AITK_MERGE"), ("--no-adapter", "AITK_NO_ADAPTER"),
                      ("--max-batch-size", "AITK_MAX_BATCH_SIZE"), ("--max-queue", "AITK_MAX_QUEUE"),
                      ("--max-tokens-cap", "AITK_MAX_TOKENS_CAP"), ("--request-timeout", "AITK_REQUEST_TIMEOUT"),
                      ("--ssl-certfile", "AITK_SSL_CERTFILE"), ("--ssl-keyfile", "AITK_SSL_KEYFILE"),
                      ("--allow-no-auth", "INFERENCE_API_KEY")]:
        assert flag in result.stdout and env in result.stdout


def test_flags_override_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AITK_PORT", "9000")
    monkeypatch.setenv("AITK_MAX_QUEUE", "5")
    monkeypatch.setenv("INFERENCE_API_KEY", "from-env")
    monkeypatch.setenv("AITK_MODEL_PATH", str(tmp_path))
    args = vars(build_parser().parse_args(["--port", "9100", "--no-merge"]))
    settings = ServerSettings(**args)
    assert (settings.port, settings.max_queue, settings.merge) == (9100, 5, False)
    assert settings.model_path == tmp_path and settings.host == "0.0.0.0"
    assert settings.key_bytes() == b"from-env" and "from-env" not in repr(settings)


def test_refuses_a_public_host_without_a_key(tiny_model):
    result = run_cli("--model", str(tiny_model.model_dir), "--adapter", str(tiny_model.adapter_dir),
                     "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr
    assert "Traceback" not in result.stderr
    loopback = run_cli("--model", str(tiny_model.model_dir), "--adapter", str(tiny_model.adapter_dir),
                       "--host", "127.0.0.1")
    assert loopback.returncode == 2 and "--allow-no-auth" in loopback.stderr


@pytest.mark.parametrize("adapter_args, message", [
    ([], "no adapter"),
    (["--adapter", "/nonexistent/adapter"], "has no adapter_config.json"),
])
def test_a_missing_adapter_is_a_startup_error(tiny_model, adapter_args, message):
    result = run_cli("--model", str(tiny_model.model_dir), *adapter_args,
                     env=clean_env(INFERENCE_API_KEY=TEST_KEY))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_serves_logs_json_warns_about_the_demo_model_and_never_logs_the_key(tiny_model):
    port = free_port()
    env = clean_env(INFERENCE_API_KEY=TEST_KEY, AITK_HOST="127.0.0.1", AITK_PORT=str(port),
                    AITK_MODEL_PATH=str(tiny_model.model_dir), AITK_ADAPTER_PATH=str(tiny_model.adapter_dir))
    proc = subprocess.Popen([sys.executable, "-m", "inference_server"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        statuses = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = httpx.get(base + "/health", timeout=2).status_code
            except httpx.TransportError:
                status = None
            statuses.add(status)
            if status == 200:
                break
            time.sleep(0.05)
        assert 200 in statuses
        ok = httpx.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {TEST_KEY}"},
                        json={"messages": [{"role": "user", "content": "hello"}], "temperature": 0})
        assert ok.json()["choices"][0]["message"]["content"] == "Hi! The adapter says hello."
        denied = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {TEST_KEY}x"})
        assert denied.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["level"] == "warning" and "demo model: output is random text" in e.get("msg", "") for e in lines)
    assert any(e["logger"] == "inference_server.access" and e.get("status") == 401 for e in lines)
    assert TEST_KEY not in out + err


def test_exits_3_after_a_failed_load(tiny_model, tmp_path):
    broken = tmp_path / "adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    result = run_cli("--model", str(tiny_model.model_dir), "--adapter", str(broken), "--host", "127.0.0.1",
                     "--port", str(free_port()), "--load-failure-exit-s", "0",
                     env=clean_env(INFERENCE_API_KEY=TEST_KEY), timeout=60)
    assert result.returncode == 3
    assert "model load failed" in result.stderr and str(broken) in result.stderr
