"""Benchmark: the server's memory under a burst of over-long prompts (not part of pytest).

    python benchmarks/server_memory.py                 # 64 requests of 1 MiB prompts
    python benchmarks/server_memory.py --requests 16 --prompt-mib 0.5

Starts the real server in a subprocess (``python -m inference_server``, the offline demo
model, one torch thread), reads its resident memory (RSS) from /proc (psutil elsewhere)
every 10 ms, and fires ``--requests`` concurrent chat requests whose single user message
is ``--prompt-mib`` MiB of text. The body limit is raised to fit them, so what is measured
is the prompt-length check, not the 413 in front of it: every request must get a 400
``context_length_exceeded`` (the demo model's context is 512 tokens). Then it sends one
normal request, waits a moment and reads RSS again.

Then a flood: ``--half-open`` connections (default 3,000) that send part of a request
head and stall. It times a real request sent during the flood and counts how many of them
the server closes (at the connection limit at once, the rest after ``--header-timeout``).

Prints the baseline RSS, the peak growth during the burst and the growth still held
after it, the flood's figures, and PASS/FAIL against the goals (peak growth < 512 MB,
issue 9; every half-open connection closed by the server, real requests still served).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from inference_server.demo_model import build_demo_model  # noqa: E402

KEY = "bench-key"
GOAL_PEAK_MB = 512
MB = 1_000_000


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    import psutil  # not Linux: psutil reads it portably

    return psutil.Process(pid).memory_info().rss


class RssSampler:
    """Samples a process's RSS in a thread; ``peak`` is the highest value seen."""

    def __init__(self, pid: int, every_s: float = 0.01):
        self.pid, self.every_s = pid, every_s
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, adapter_dir: Path, body_bytes: int,
                 header_timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFERENCE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "inference_server", "--model", str(model_dir), "--adapter", str(adapter_dir),
           "--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--max-body-bytes", str(body_bytes),
           "--header-timeout", str(header_timeout), "--log-level", "error"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("server died: " + proc.stderr.read()[-2000:])
        time.sleep(0.05)


async def burst(url: str, requests: int, prompt: str) -> collections.Counter:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def one() -> str:
            response = await client.post(url + "/v1/chat/completions", json=body,
                                         headers={"Authorization": f"Bearer {KEY}"})
            code = response.json().get("error", {}).get("code") if response.status_code != 200 else "ok"
            return f"{response.status_code} {code}"

        return collections.Counter(await asyncio.gather(*(one() for _ in range(requests))))


def flood(url: str, count: int, header_timeout: float) -> dict:
    """Half-open connections against the server; returns what happened to them."""
    host, port = url.removeprefix("http://").split(":")
    socks, refused = [], 0
    started = time.perf_counter()
    for i in range(count):
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Stalled: " + str(i).encode())
            socks.append(s)
        except OSError:
            refused += 1
    opened_s = time.perf_counter() - started
    real_started = time.perf_counter()
    real = httpx.post(url + "/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4},
                      headers={"Authorization": f"Bearer {KEY}"})
    real_s = time.perf_counter() - real_started
    watch = selectors.DefaultSelector()  # epoll: select() stops at descriptor 1024
    for s in socks:
        watch.register(s, selectors.EVENT_READ)
    still_open, closed, last_closed = len(socks), 0, 0.0
    deadline = time.perf_counter() + header_timeout + 5
    while still_open and time.perf_counter() < deadline:
        for key, _ in watch.select(timeout=0.1):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed += 1
                still_open -= 1
                last_closed = time.perf_counter() - started
                watch.unregister(key.fileobj)
    watch.close()
    for s in socks:
        s.close()
    return {"count": count, "refused_at_connect": refused, "opened_s": opened_s, "real_status": real.status_code,
            "real_s": real_s, "closed_by_server": closed, "all_closed_after_s": last_closed,
            "still_open": still_open}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--prompt-mib", type=float, default=1.0)
    parser.add_argument("--half-open", type=int, default=3000, help="connections in the flood (0: none)")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="the server's (its default: 10)")
    args = parser.parse_args()

    prompt_chars = int(args.prompt_mib * 1024 * 1024)
    # Words, not one repeated letter: BPE merges a run of one letter into few tokens.
    words = "the quick brown fox jumps over the lazy dog 0123456789 and again "
    prompt = (words * (prompt_chars // len(words) + 1))[:prompt_chars]
    with tempfile.TemporaryDirectory(prefix="aitk-mem-bench-") as tmp:
        built = build_demo_model(Path(tmp))
        proc, url = start_server(built.model_dir, built.adapter_dir, body_bytes=prompt_chars + 64 * 1024,
                                 header_timeout=args.header_timeout)
        try:
            time.sleep(1.0)  # let start-up allocations settle
            baseline = rss_bytes(proc.pid)
            started = time.perf_counter()
            with RssSampler(proc.pid) as sampler:
                outcomes = asyncio.run(burst(url, args.requests, prompt))
            burst_s = time.perf_counter() - started
            normal = httpx.post(url + "/v1/chat/completions", timeout=60,
                                json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4},
                                headers={"Authorization": f"Bearer {KEY}"})
            time.sleep(2.0)
            held = rss_bytes(proc.pid)
            flooded = None
            if args.half_open:
                with RssSampler(proc.pid) as flood_sampler:
                    flooded = flood(url, args.half_open, args.header_timeout)
        finally:
            proc.terminate()
            proc.wait(20)

    peak_growth, held_growth = (sampler.peak - baseline) / MB, (held - baseline) / MB
    print(f"load: {args.requests} concurrent requests, prompts of {prompt_chars:,} characters")
    print(f"outcomes: {dict(outcomes)}; a normal request afterwards: {normal.status_code}")
    print(f"burst took {burst_s:.2f} s")
    print(f"RSS baseline {baseline / MB:8.1f} MB")
    print(f"RSS peak     {sampler.peak / MB:8.1f} MB   growth {peak_growth:8.1f} MB")
    print(f"RSS after    {held / MB:8.1f} MB   held   {held_growth:8.1f} MB")
    ok = peak_growth < GOAL_PEAK_MB and normal.status_code == 200
    if flooded is not None:
        f = flooded
        print(f"flood: {f['count']} half-open connections opened in {f['opened_s']:.2f} s "
              f"({f['refused_at_connect']} refused at connect); a real request meanwhile: {f['real_status']} "
              f"in {f['real_s'] * 1000:.0f} ms")
        print(f"flood: {f['closed_by_server']} closed by the server, the last {f['all_closed_after_s']:.1f} s after "
              f"the flood began; {f['still_open']} still open; RSS peak growth "
              f"{(flood_sampler.peak - held) / MB:.1f} MB")
        flood_ok = f["real_status"] == 200 and f["still_open"] == 0
        print(f"{'PASS' if flood_ok else 'FAIL'}: every half-open connection dropped, real requests served")
        ok = ok and flood_ok
    print(f"{'PASS' if ok else 'FAIL'}: peak growth {peak_growth:.0f} MB vs goal < {GOAL_PEAK_MB} MB"
          f"{'' if normal.status_code == 200 else ' (the normal request failed)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
