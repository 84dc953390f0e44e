#!/usr/bin/env bash
# The inference server on a real GPU, beside transformers' own continuous-batching server.
#
#     benchmarks/gpu_check.sh [WORK_DIR]        (from the repository root or anywhere)
#
# One command, about 4 minutes on one H100 (capped at 8): it
#   1. builds a Phi-3-mini-shaped model (Phi3Config's defaults: hidden 3072, 32 layers,
#      vocab 32064, 3.8 B parameters) with random weights in bf16 on the GPU and saves it
#      to WORK_DIR (nothing is downloaded; the tokenizer is the demo model's, trained here);
#   2. serves it with our server (python -m inference_server --device cuda --dtype bfloat16,
#      base model, no adapter) and with `transformers serve --continuous-batching`;
#   3. runs benchmarks/realistic_load.py's workload (prompts of 20-400 tokens, max_tokens
#      64-320, sampled at temperature 1, clients 0.05 s apart) at 1, 8 and 32 concurrent
#      clients against each;
#   4. prints, per server and concurrency: output tok/s, TTFT (median and p90) and the GPU
#      memory in use (peak of nvidia-smi's reading during the wave).
#
# Needs: an NVIDIA GPU with its driver, the `server` extra installed with a CUDA torch.
# Exit status: 0 after the table, 2 when there is no usable GPU, else the failing step's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="${1:-$(mktemp -d /tmp/aitk-gpu-check.XXXXXX)}"
mkdir -p "$WORK"

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: nvidia-smi not found: this check needs an NVIDIA GPU and its driver" >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA device (a CPU build of torch, or a driver too old for its CUDA)" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
exec timeout 470 "$PY" - "$WORK" <<'PYTHON'
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from benchmarks.realistic_load import start_until_healthy, wave, workload

work = Path(sys.argv[1])
CONCURRENCY = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(dest: Path) -> Path:
    """Phi-3-mini's shape, random bf16 weights made on the GPU, saved with a tokenizer."""
    model_dir = dest / "phi3-mini-random"
    if (model_dir / "config.json").is_file():
        return model_dir
    from transformers import AutoTokenizer, GenerationConfig, Phi3Config, Phi3ForCausalLM

    from inference_server.demo_model import build_demo_model

    t0 = time.perf_counter()
    demo = build_demo_model(dest / "demo")  # only for its tokenizer (trained offline)
    tok = AutoTokenizer.from_pretrained(demo.model_dir)
    end = tok.convert_tokens_to_ids("<|end|>")
    cfg = Phi3Config(bos_token_id=None, eos_token_id=end, pad_token_id=tok.pad_token_id)  # vocab 32064 >= tokenizer's
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Phi3ForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=[end], pad_token_id=tok.pad_token_id, do_sample=True,
                                               temperature=1.0, top_p=1.0)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    print(f"model: Phi-3-mini shape, {params / 1e9:.2f} B parameters, bf16, built in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return model_dir


class GpuMemory(threading.Thread):
    """Peak GPU memory in use (MiB, nvidia-smi) while running."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.peak = max(self.peak, int(out[0]))
            time.sleep(0.2)


def run_waves(name: str, url: str, model: str | None, encode) -> list[tuple]:
    rows = []
    for n in CONCURRENCY:
        clients = workload(encode, n=max(n, 2), stagger=0.05, seed=n, variant=n)[:n]  # (n=1: one of two)
        mem = GpuMemory()
        mem.start()
        wall, results = asyncio.run(wave(url, {}, model, clients, temperature=1.0))
        mem.done.set()
        mem.join()
        tokens = sum(r.completion_tokens for r in results)
        ttfts = sorted(r.ttft_s for r in results)
        p90 = ttfts[min(len(ttfts) - 1, round(0.9 * (len(ttfts) - 1)))]
        rows.append((name, n, tokens / wall, statistics.median(ttfts), p90, mem.peak / 1024))
        print(f"  {name}: {n} clients done ({tokens} tokens in {wall:.1f} s)", flush=True)
    return rows


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # transformers serve's generation thread is not a daemon
        proc.kill()
        proc.wait(10)


model_dir = build_model(work)
from transformers import AutoTokenizer  # noqa: E402

tok = AutoTokenizer.from_pretrained(model_dir)


def encode(text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


rows = []
env = {**os.environ, "AITK_LOG_LEVEL": "warning"}

port = free_port()
url = f"http://127.0.0.1:{port}"
ours, ready_s = start_until_healthy(
    [sys.executable, "-m", "inference_server", "--model", str(model_dir), "--no-adapter", "--allow-no-auth",
     "--host", "127.0.0.1", "--port", str(port), "--device", "cuda", "--dtype", "bfloat16",
     "--max-batch-size", "32", "--max-tokens-cap", "4096", "--log-format", "text"], env, url, "our server")
print(f"our server ready in {ready_s:.0f} s", flush=True)
try:
    rows += run_waves("aitk inference_server", url, None, encode)
finally:
    stop(ours)

port = free_port()
url = f"http://127.0.0.1:{port}"
exe = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
peer, ready_s = start_until_healthy(
    [exe, "serve", "--continuous-batching", "--device", "cuda", "--dtype", "bfloat16", "--host", "127.0.0.1",
     "--port", str(port), "--log-level", "warning", str(model_dir)], env, url, "transformers serve")
print(f"transformers serve ready in {ready_s:.0f} s", flush=True)
try:
    rows += run_waves("transformers serve --cb", url, str(model_dir), encode)
finally:
    stop(peer)

print()
print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda})")
print(f"{'server':<26}{'clients':>8}{'tok/s':>10}{'TTFT p50':>10}{'TTFT p90':>10}{'GPU GiB':>9}")
for name, n, tps, p50, p90, gib in rows:
    print(f"{name:<26}{n:>8}{tps:>10.1f}{p50:>9.2f}s{p90:>9.2f}s{gib:>9.1f}")
PYTHON
