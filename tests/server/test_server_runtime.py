"""The server says what it runs on (one log line at start), and refuses in one sentence,
naming the cause and the ``containerImage`` fix, when the image's torch cannot work: the
sentence is what ``aitk status``/``aitk logs``/the Endpoint view show (console_cause)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aitk_tui.cloud.endpoint_status import console_cause
from inference_server.runtime import Runtime, refusal
from tests.fixtures_model import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]


def _run(tiny_model, env_extra: dict[str, str], pythonpath: list[str] | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AITK_") and k != "INFERENCE_API_KEY"}
    env.update(PYTHONPATH=os.pathsep.join([*(pythonpath or []), str(ROOT)]), HF_HUB_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="",  # no CUDA device, even on a machine with a GPU
               AITK_TORCH_THREADS="1", INFERENCE_API_KEY=TEST_KEY, AITK_HOST="127.0.0.1", AITK_PORT="1",
               AITK_MODEL_PATH=str(tiny_model.model_dir), AITK_ADAPTER_PATH=str(tiny_model.adapter_dir), **env_extra)
    return subprocess.run([sys.executable, "-m", "inference_server"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)


def _records(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_gpu_profile_without_cuda_logs_the_runtime_then_refuses_in_one_sentence(tiny_model):
    result = _run(tiny_model, {"AITK_REQUIRE_GPU": "true"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    runtime = [r for r in _records(result.stderr) if r.get("msg", "").startswith("runtime: ")]
    assert len(runtime) == 1  # said once
    line = runtime[0]
    import torch

    assert line["python"] == platform.python_version() and line["torch"] == torch.__version__
    assert line["gpu"] is None and ", CPU, " in line["msg"]
    for dist in ("transformers", "peft", "accelerate"):
        assert line[dist] == importlib.metadata.version(dist) and f"{dist} {line[dist]}" in line["msg"]
    # One sentence with cause and fix, and it is the one the status views pick from the log.
    refusals = [ln for ln in result.stderr.splitlines() if ln.startswith("inference_server: ")]
    assert len(refusals) == 1
    sentence = refusals[0]
    assert "GPU workload profile" in sentence and "sees no CUDA device" in sentence
    assert "containerImage" in sentence
    assert console_cause(result.stderr.splitlines()) == sentence[:300]


_FAKE_TORCH = textwrap.dedent('''
    __version__ = "{version}"
    class version:
        cuda = "12.4"
    class cuda:
        @staticmethod
        def is_available():
            return False
''')


def test_an_image_torch_too_old_for_transformers_is_refused_with_the_image_fix(tiny_model, tmp_path):
    # AI Toolkit's image: torch 2.4.0. A stand-in torch package (module + dist-info) first on
    # the path is what transformers' own check and the server read.
    fake = tmp_path / "image-site"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(_FAKE_TORCH.format(version="2.4.0"))
    dist = fake / "torch-2.4.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.4.0\n")
    result = _run(tiny_model, {}, pythonpath=[str(fake)])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    cause = console_cause(result.stderr.splitlines())
    transformers = importlib.metadata.version("transformers")
    assert cause is not None and cause.startswith(f"inference_server: transformers {transformers} cannot use "
                                                  "the image's torch 2.4.0 (it needs torch >= 2.6)")
    assert "containerImage" in cause


def _rt(**kw) -> Runtime:
    base = dict(python="3.11.7", torch="2.13.0+cu126", torch_cuda="12.6", gpu="NVIDIA A100 80GB PCIe",
                gpu_memory_gib=79.3, transformers="5.25.0", peft="0.21.2", accelerate="1.16.0", torch_usable=True)
    base.update(kw)
    return Runtime(**base)


def test_the_start_line_names_the_gpu_and_its_memory():
    assert _rt().line() == ("runtime: Python 3.11.7, torch 2.13.0+cu126 (CUDA 12.6), GPU NVIDIA A100 80GB PCIe "
                            "(79.3 GiB), transformers 5.25.0, peft 0.21.2, accelerate 1.16.0")


@pytest.mark.parametrize("rt, gpu_required, device, expected", [
    (_rt(), True, "auto", None),
    (_rt(gpu=None, gpu_memory_gib=None), False, "auto", None),  # not on a GPU profile: CPU is fine
    (_rt(gpu=None, gpu_memory_gib=None), True, "cpu", None),  # asked for the CPU
    (_rt(gpu=None, gpu_memory_gib=None, torch_cuda=None, torch="2.13.0+cpu"), True, "auto", "(a CPU build) sees no CUDA"),
    (_rt(gpu=None, gpu_memory_gib=None, torch_cuda="13.0"), True, "auto", "(a build for CUDA 13.0) sees no CUDA"),
    (_rt(torch=None), False, "auto", "the image has no torch"),
    (_rt(torch_usable=False, torch="2.4.0"), True, "auto", "cannot use the image's torch 2.4.0"),
])
def test_refusal_names_the_cause(rt, gpu_required, device, expected):
    why = refusal(rt, gpu_required=gpu_required, device=device)
    if expected is None:
        assert why is None
    else:
        assert expected in why and "\n" not in why
