"""Pytest plugin: the offline demo model, built once per session, and in-process servers.

``tiny_model`` builds ``inference_server.demo_model`` into a session temp folder (about
3 s plus imports on one thread). ``serve(...)`` runs the real inference server (uvicorn on
127.0.0.1, an OS-chosen port, in a background thread) so tests speak real HTTP, including
streaming and disconnects. ``tiny_server`` is one shared instance (adapter unmerged, so
both the adapter and the base are served) for the tests that need no special limits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEST_KEY = "test-key-7f3a9c"  # a recognisable value so tests can grep for leaks


@dataclass(frozen=True)
class TinyModel:
    model_dir: Path
    adapter_dir: Path


@dataclass
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT (no /v1)
    api_key: str | None
    app: Any
    settings: Any

    @property
    def state(self):
        return self.app.state.server

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    import torch

    torch.set_num_threads(1)
    from inference_server.demo_model import build_demo_model

    built = build_demo_model(tmp_path_factory.mktemp("demo-model-build"))
    return TinyModel(built.model_dir, built.adapter_dir)


def build_random_adapter(tiny: TinyModel, dest: Path, *, seed: int) -> Path:
    """A second LoRA adapter for the tiny base: the demo adapter's shape with random weights
    (lora_B too, so it changes the output), which greedily answers unlike the base and the
    demo adapter. Written to ``dest``; about a second on one thread."""
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny.model_dir)
    config = LoraConfig.from_pretrained(str(tiny.adapter_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft 0.21 vs transformers 5; the relative base path
        model = get_peft_model(base, config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        model.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def second_adapter(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder named ``second-adapter``: another adapter on ``tiny_model``'s base."""
    return build_random_adapter(tiny_model, tmp_path_factory.mktemp("adapters") / "second-adapter", seed=1)


def make_settings(tiny: TinyModel, **overrides: Any):
    """Settings for a test server; every field that matters is explicit, so stray
    AITK_* variables in the environment cannot change what a test proves."""
    from inference_server.settings import ServerSettings

    values: dict[str, Any] = dict(
        model_path=tiny.model_dir,
        adapter_path=tiny.adapter_dir,
        adapter_name=None,
        served_model_name=None,
        no_adapter=False,
        merge=False,
        chat_template=None,
        dtype="auto",
        device="cpu",
        threads=1,
        cpu_packed="auto",
        cpu_skip_padding=True,
        host="127.0.0.1",
        port=0,
        api_key=TEST_KEY,
        allow_no_auth=False,
        max_batch_size=8,
        max_queue=64,
        max_tokens_cap=2048,
        request_timeout=60.0,
        max_body_bytes=1_048_576,
        max_messages=256,
        load_failure_exit_s=-1,
    )
    if "adapters" in overrides:  # several adapters (or NAME=PATH) replace the single one
        values.pop("adapter_path")
    values.update(overrides)
    return ServerSettings(**values)


@contextlib.contextmanager
def serve(settings, *, loader=None, on_load_failure=None, wait_ready: bool = True,
          ready_timeout: float = 60.0) -> Iterator[RunningServer]:
    """Run the real app under uvicorn in a thread for the duration of the block."""
    import uvicorn

    from inference_server.__main__ import uvicorn_config
    from inference_server.app import create_app

    app = create_app(settings, loader=loader, on_load_failure=on_load_failure)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, settings, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    scheme = "https" if settings.ssl_certfile else "http"
    running = RunningServer(f"{scheme}://127.0.0.1:{port}", settings.key_bytes() and settings.key_bytes().decode(),
                            app, settings)
    try:
        deadline = time.monotonic() + ready_timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        if wait_ready:
            while running.state.status == "loading":
                if time.monotonic() > deadline:
                    raise RuntimeError("the test server did not load its model in time")
                time.sleep(0.01)
            if running.state.status != "ready":
                raise RuntimeError(f"the test server failed to load: {running.state.error}")
        yield running
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def tiny_server(tiny_model: TinyModel) -> Iterator[RunningServer]:
    with serve(make_settings(tiny_model)) as running:
        yield running


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def get_json(running: RunningServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(running.base_url + path, headers=running.headers(), timeout=10, **kwargs)
