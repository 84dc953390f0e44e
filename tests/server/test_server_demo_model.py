"""The offline demo build: layout, markers, idempotence, a real (non-zero) adapter, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

from inference_server.demo_model import BUILD_MARKER, DEMO_MARKER, build_demo_model, existing_build

ROOT = Path(__file__).resolve().parents[2]


def test_build_layout_and_demo_markers(tiny_model):
    assert tiny_model.model_dir.name == "demo-model" and tiny_model.adapter_dir.name == "demo-adapter"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", DEMO_MARKER):
        assert (tiny_model.model_dir / name).is_file(), name
    assert (tiny_model.adapter_dir / "adapter_model.safetensors").is_file()
    note = json.loads((tiny_model.model_dir / DEMO_MARKER).read_text())
    assert note["demo"] is True and "random text" in note["warning"]
    config = json.loads((tiny_model.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 4 and not Path(config["base_model_name_or_path"]).is_absolute()
    tokenizer = json.loads((tiny_model.model_dir / "tokenizer_config.json").read_text())
    assert tokenizer["eos_token"] == "<|end|>" and tokenizer["pad_token"] == "<|pad|>"
    assert tokenizer["padding_side"] == "left"


def test_adapter_lora_b_is_not_zero(tiny_model):
    with safe_open(str(tiny_model.adapter_dir / "adapter_model.safetensors"), "pt") as f:
        b_weights = [f.get_tensor(k) for k in f.keys() if "lora_B" in k]
    assert len(b_weights) >= 8
    assert all(float(w.abs().sum()) > 0 for w in b_weights)


def test_second_build_reuses_the_complete_one(tiny_model):
    dest = tiny_model.model_dir.parent
    weights = tiny_model.model_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    started = time.perf_counter()
    again = build_demo_model(dest)
    assert time.perf_counter() - started < 0.5
    assert (again.model_dir, again.adapter_dir) == (tiny_model.model_dir, tiny_model.adapter_dir)
    assert weights.stat().st_mtime_ns == stamp


def test_a_build_without_its_completion_marker_is_not_trusted(tiny_model, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model.model_dir, partial / "demo-model")
    shutil.copytree(tiny_model.adapter_dir, partial / "demo-adapter")
    assert existing_build(partial) is None
    shutil.copy(tiny_model.model_dir.parent / BUILD_MARKER, partial / BUILD_MARKER)
    assert existing_build(partial) is not None
    (partial / BUILD_MARKER).write_text(json.dumps({"version": -1}))
    assert existing_build(partial) is None  # an older recipe is rebuilt, not reused


def test_cli_prints_both_paths_as_json(tiny_model):
    dest = tiny_model.model_dir.parent
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "inference_server.demo_model", "--out", str(dest)],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True, timeout=60)
    paths = json.loads(out.stdout)
    assert paths == {"model_dir": str(tiny_model.model_dir), "adapter_dir": str(tiny_model.adapter_dir)}
