"""Prometheus text-format metrics, kept by hand (no client library in the container).

Counters and histograms are updated from two threads (the event loop and the engine's
worker), so every update takes one lock; gauges are read at scrape time from callables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def render(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        pairs = zip(self.buckets, self.counts, strict=True)
        lines = [f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {c}' for b, c in pairs]
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        suffix = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{suffix} {self.sum:.6f}")
        lines.append(f"{name}_count{suffix} {self.total}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.duration = _Histogram(DURATION_BUCKETS)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def count_request(self, route: str, status: int, duration_s: float) -> None:
        with self._lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            if route == "/v1/chat/completions":
                self.duration.observe(duration_s)

    def add_prompt(self, n: int) -> None:
        with self._lock:
            self.prompt_tokens += n

    def add_generated(self, n: int) -> None:
        with self._lock:
            self.generated_tokens += n

    def observe_ttft(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def render(self) -> str:
        with self._lock:
            out = [
                "# HELP aitk_requests_total HTTP requests by route and status code.",
                "# TYPE aitk_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                out.append(f'aitk_requests_total{{route="{route}",status="{status}"}} {n}')
            out += [
                "# HELP aitk_generated_tokens_total Completion tokens generated.",
                "# TYPE aitk_generated_tokens_total counter",
                f"aitk_generated_tokens_total {self.generated_tokens}",
                "# HELP aitk_prompt_tokens_total Prompt tokens admitted.",
                "# TYPE aitk_prompt_tokens_total counter",
                f"aitk_prompt_tokens_total {self.prompt_tokens}",
                "# HELP aitk_time_to_first_token_seconds Arrival to first generated token.",
                "# TYPE aitk_time_to_first_token_seconds histogram",
                *self.ttft.render("aitk_time_to_first_token_seconds"),
                "# HELP aitk_request_duration_seconds Chat completion requests, arrival to last byte.",
                "# TYPE aitk_request_duration_seconds histogram",
                *self.duration.render("aitk_request_duration_seconds"),
            ]
        for name, (help_text, read) in sorted(self._gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(out) + "\n"
