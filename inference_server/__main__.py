"""Command line: ``python -m inference_server --model PATH --adapter PATH ...``.

Flags override the environment (``AITK_*``, ``INFERENCE_API_KEY``); see ``--help``.
Exit codes: 0 after a normal shutdown, 2 for a configuration error (bad flag, unsafe auth
setting, missing path, or a torch the server cannot use: reported before anything is served), 3 when the model failed to
load (the server first answers ``/health`` with 503 and the error for
``--load-failure-exit-s`` seconds so a client can read why, then exits so a supervisor
restarts or reports it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

if __name__ == "__main__":
    # Before any third-party import: run in the environment the container's deps step made
    # (inference_server/deps.py), if it made one.
    from .deps import use_prepared_environment

    use_prepared_environment(sys.argv[1:])

from pydantic import ValidationError  # noqa: E402

from .settings import DEFAULT_PORT, ConfigError, ServerSettings, check_paths, check_security  # noqa: E402

EXIT_CONFIG, EXIT_LOAD_FAILED = 2, 3


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors (Container Apps, Loki) parse best."""

    def format(self, record: logging.LogRecord) -> str:
        # UTC with its zone, so a reader anywhere (aitk logs, the Endpoint view) shows it in its own.
        stamp = datetime.fromtimestamp(record.created, timezone.utc)
        entry = {
            "ts": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["msg"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(settings: ServerSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for noisy in ("httpx", "filelock", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m inference_server",
        description="OpenAI-compatible chat server for a base causal LM plus a LoRA adapter. "
        "Every flag can also come from the environment variable shown.",
        argument_default=argparse.SUPPRESS,
    )
    add = p.add_argument
    add("--model", dest="model_path", type=Path, help="base model folder [AITK_MODEL_PATH]")
    add("--adapter", dest="adapters", action="append", metavar="[NAME=]PATH",
        help="LoRA adapter folder, served as NAME (default: the folder's name); repeat for several "
        "adapters on one base [AITK_ADAPTERS or AITK_ADAPTER_PATH: PATH, or NAME=PATH,NAME=PATH,...]")
    add("--adapter-name", help="model id of a single PATH adapter; default: its folder name [AITK_ADAPTER_NAME]")
    add("--serve-base", action="store_true",
        help="keep the adapters unmerged so the base model answers too, in the same batches [AITK_SERVE_BASE]")
    add("--served-model-name", help="model id of the base; default: its folder name [AITK_SERVED_MODEL_NAME]")
    add("--no-adapter", action="store_true", help="serve the base model alone [AITK_NO_ADAPTER]")
    add("--merge", action=argparse.BooleanOptionalAction,
        help="merge the adapter into the weights; default: merge a single adapter unless quantized or "
        "--serve-base [AITK_MERGE]")
    add("--chat-template", type=Path, help="Jinja chat template file [AITK_CHAT_TEMPLATE]")
    add("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
        help="default auto: bf16 on CUDA (fp16 without bf16), fp32 on CPU [AITK_DTYPE]")
    add("--device", choices=["auto", "cpu", "cuda"], help="[AITK_DEVICE]")
    add("--threads", type=int, help="torch CPU threads; default: cores - 1 [AITK_TORCH_THREADS]")
    add("--cpu-packed", choices=["auto", "on", "off"],
        help="on a CPU, pack float32 linear weights once so batched decode steps run through oneDNN "
        "(an extra copy of those weights); default auto: when the copy fits in a quarter of memory [AITK_CPU_PACKED]")
    add("--cpu-skip-padding", action=argparse.BooleanOptionalAction,
        help="on a CPU, batched decode attention reads each row's own KV cells, skipping the batch's padding; "
        "default on [AITK_CPU_SKIP_PADDING]")
    add("--host", help="default 0.0.0.0 [AITK_HOST]")
    add("--port", type=int, help=f"default {DEFAULT_PORT} [AITK_PORT]")
    add("--ssl-certfile", type=Path, help="[AITK_SSL_CERTFILE]")
    add("--ssl-keyfile", type=Path, help="[AITK_SSL_KEYFILE]")
    add("--allow-no-auth", action="store_true",
        help="serve without an API key; otherwise INFERENCE_API_KEY is required [AITK_ALLOW_NO_AUTH]")
    add("--max-batch-size", type=int, help="requests decoded together; default 8 [AITK_MAX_BATCH_SIZE]")
    add("--max-queue", type=int, help="requests waiting before 429; default 64 [AITK_MAX_QUEUE]")
    add("--max-tokens-cap", type=int, help="largest max_tokens accepted; default 2048 [AITK_MAX_TOKENS_CAP]")
    add("--request-timeout", type=float, help="seconds per request; default 300 [AITK_REQUEST_TIMEOUT]")
    add("--prefill-chunk", type=int, metavar="TOKENS",
        help="prompt tokens prefilled between two decode steps; longer prompts go in pieces so running "
        "streams keep flowing; default 0: 32 on a CPU, 512 on a GPU [AITK_PREFILL_CHUNK]")
    add("--prefix-cache-tokens", type=int, metavar="TOKENS",
        help="tokens of finished requests' KV cache kept so a chat's next turn is not prefilled again; "
        "default: the context length; 0: off [AITK_PREFIX_CACHE_TOKENS]")
    add("--min-step-interval", type=float, metavar="SECONDS",
        help="least seconds per generated token, so a tiny demo model streams at a readable pace; "
        "default 0 (full speed) [AITK_MIN_STEP_INTERVAL]")
    add("--max-body-bytes", type=int, help="default 1 MiB [AITK_MAX_BODY_BYTES]")
    add("--max-messages", type=int, help="default 256 [AITK_MAX_MESSAGES]")
    add("--header-timeout", type=float,
        help="seconds a client has to send a request's line and headers; default 10 [AITK_HEADER_TIMEOUT]")
    add("--body-timeout", type=float,
        help="seconds a client has to send a request's body once its head is complete; default 60 "
        "[AITK_BODY_TIMEOUT]")
    add("--keep-alive-timeout", type=float,
        help="seconds an idle kept-alive connection stays open; default 75 [AITK_KEEP_ALIVE_TIMEOUT]")
    add("--max-connections", type=int,
        help="open connections; at the limit the oldest idle one makes room; default 512 [AITK_MAX_CONNECTIONS]")
    add("--max-header-bytes", type=int,
        help="most bytes one connection buffers before its request head is complete; default 16 KiB "
        "[AITK_MAX_HEADER_BYTES]")
    add("--load-failure-exit-s", type=float,
        help="after a failed load keep answering 503 this long, then exit 3; <0 never; default 30 "
        "[AITK_LOAD_FAILURE_EXIT_S]")
    add("--log-level", choices=["debug", "info", "warning", "error"], help="[AITK_LOG_LEVEL]")
    add("--log-format", choices=["json", "text"], help="default json [AITK_LOG_FORMAT]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    try:
        settings = ServerSettings(**args)
        check_security(settings)
        check_paths(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        print(f"inference_server: invalid settings: {problems}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"inference_server: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    configure_logging(settings)
    # Said once, then refused in one sentence when the image's torch cannot work (runtime.py).
    from .runtime import inspect_runtime, refusal, require_gpu

    rt = inspect_runtime()
    logging.getLogger("inference_server").info(rt.line(), extra={"fields": rt.fields()})
    why = refusal(rt, gpu_required=require_gpu(), device=settings.device)
    if why:
        print(f"inference_server: {why}", file=sys.stderr)
        return EXIT_CONFIG

    import uvicorn

    from .app import create_app
    from .connections import ensure_fd_headroom

    ensure_fd_headroom(settings.max_connections)

    outcome = {"code": 0}
    server: uvicorn.Server | None = None

    def on_load_failure(message: str) -> None:
        outcome["code"] = EXIT_LOAD_FAILED
        if settings.load_failure_exit_s < 0:
            return

        def stop() -> None:
            logging.getLogger("inference_server").error("exiting after the failed load (code %d)", EXIT_LOAD_FAILED)
            if server is not None:
                server.should_exit = True

        threading.Timer(settings.load_failure_exit_s, stop).start()

    app = create_app(settings, on_load_failure=on_load_failure)
    server = uvicorn.Server(uvicorn_config(app, settings))
    server.run()
    return outcome["code"]


def uvicorn_config(app, settings: ServerSettings, **overrides):
    """The uvicorn configuration the CLI serves with (tests reuse it)."""
    from .connections import GuardedConfig

    options = dict(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_timeout,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        log_config=None,  # keep configure_logging's handlers
        access_log=False,  # the app writes its own access log (no query strings, no headers)
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    options.update(overrides)
    return GuardedConfig(app, **options)


if __name__ == "__main__":
    sys.exit(main())
