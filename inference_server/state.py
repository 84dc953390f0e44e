"""The model's life in the server: loading -> ready | failed. The engine exists only once
ready; until then the routes that need it answer 503 (with Retry-After while loading), and
``/health`` says which of the three it is."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .engine import Engine
from .errors import APIError
from .limits import prompt_char_limit
from .loading import LoadError
from .metrics import Metrics
from .settings import ConfigError, ServerSettings

log = logging.getLogger("inference_server")

Loader = Callable[[ServerSettings], Any]


class ServerState:
    """Loading -> ready | failed; the engine exists only once ready."""

    def __init__(self) -> None:
        self.status = "loading"
        self.error: str | None = None
        self.loaded: Any = None
        self.engine: Engine | None = None
        self.prompt_char_limit = 0  # set with the model: longer prompts are refused untokenized
        self.started = time.time()

    def require_engine(self) -> Engine:
        if self.engine is not None:
            return self.engine
        if self.status == "failed":
            raise APIError(503, f"the model failed to load: {self.error}", "service_unavailable", "load_failed")
        raise APIError(503, "the model is still loading; retry shortly", "service_unavailable",
                       "model_loading", headers={"Retry-After": "5"})

    def load(self, settings: ServerSettings, load: Loader, metrics: Metrics,
             on_load_failure: Callable[[str], None] | None = None) -> None:
        """Load the model and start the engine (run in a thread of its own at start-up)."""
        try:
            loaded = load(settings)
            engine = Engine(loaded, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
                            max_prefill_tokens=settings.max_prefill_tokens, metrics=metrics,
                            min_step_interval=settings.min_step_interval,
                            prefill_chunk=settings.prefill_chunk or None,
                            prefix_cache_tokens=settings.prefix_cache_tokens)
            engine.start()
            self.prompt_char_limit = prompt_char_limit(loaded.tokenizer, loaded.context_len)
            self.loaded, self.engine, self.status = loaded, engine, "ready"
            log.info("ready: serving %s (load took %.1f s)", ", ".join(loaded.served), time.time() - self.started)
        except Exception as exc:
            message = str(exc) if isinstance(exc, (LoadError, ConfigError)) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (LoadError, ConfigError)):
                log.exception("model load failed")
            log.error("model load failed: %s", message)
            self.error, self.status = message, "failed"
            if on_load_failure is not None:
                on_load_failure(message)

    def health(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``/health``'s answer: status code, body, headers."""
        if self.status == "ready":
            loaded = self.loaded
            return 200, {"status": "ok", "model": loaded.base_id, "adapter": loaded.adapter_id,
                         "adapters": list(loaded.adapters), "merged": loaded.merged, "demo": loaded.demo,
                         "models": list(loaded.served)}, {}
        if self.status == "failed":
            return 503, {"status": "error", "error": self.error}, {}
        return 503, {"status": "loading"}, {"Retry-After": "5"}
