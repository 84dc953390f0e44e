"""Server configuration: one pydantic-settings model fed by CLI flags and environment.

Every option has an environment variable (``AITK_<NAME>``; the API key is
``INFERENCE_API_KEY``) because a container app is configured through env and secrets,
while a developer uses flags. Flags win over the environment.

Also owns the start-up checks that must run before anything is served: the auth rule
(no key means ``--allow-no-auth`` is required, on any host) and the model paths.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 7860  # AI Toolkit's inference port


class ConfigError(Exception):
    """A setting makes start-up impossible; the message says which and what to do."""


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AITK_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    model_path: Path | None = Field(None, description="folder of the base model (config.json, weights, tokenizer)")
    adapter_path: Path | None = Field(None, description="folder of the PEFT LoRA adapter (adapter_config.json)")
    adapter_name: str | None = Field(None, description="model id of the adapter (default: its folder name)")
    served_model_name: str | None = Field(None, description="model id of the base (default: its folder name)")
    no_adapter: bool = Field(False, description="serve the base model alone (must be explicit)")
    merge: bool | None = Field(None, description="merge the adapter into the weights (default: yes unless quantized)")
    chat_template: Path | None = Field(None, description="Jinja chat template file, if the tokenizer has none")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("AITK_TORCH_THREADS", "AITK_THREADS"),
        description="torch CPU threads (default: cores - 1 on CPU, leaving one for HTTP)",
    )

    host: str = "0.0.0.0"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("INFERENCE_API_KEY", "AITK_API_KEY"),
        description="bearer key required on /v1 and /metrics",
    )
    allow_no_auth: bool = Field(False, description="serve without an API key (explicit opt-in)")

    max_batch_size: int = Field(8, ge=1, le=256, description="rows decoded together")
    max_queue: int = Field(64, ge=0, description="requests waiting for a slot before 429")
    max_tokens_cap: int = Field(2048, ge=1, description="largest max_tokens accepted (above: 400)")
    request_timeout: float = Field(300.0, gt=0, description="seconds per request, queueing included")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body (above: 413)")
    max_messages: int = Field(256, ge=1, description="most messages per request (above: 400)")
    max_prefill_tokens: int = Field(
        4096, ge=1, description="prompt tokens admitted per decode step (bounds others' stalls)"
    )
    load_failure_exit_s: float = Field(
        30.0,
        description="after a failed load, answer 503 with the error this long, then exit 3 (<0: never exit)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("--ssl-certfile and --ssl-keyfile go together: give both or neither")
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            self.api_key = None  # an empty secret is no key; the auth rule below then applies
        return self

    # -- derived -----------------------------------------------------------------
    @property
    def base_id(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        return self.model_path.name if self.model_path else "model"

    @property
    def adapter_id(self) -> str | None:
        if self.no_adapter:
            return None
        if self.adapter_name:
            return self.adapter_name
        return self.adapter_path.name if self.adapter_path else "adapter"

    def key_bytes(self) -> bytes | None:
        return self.api_key.get_secret_value().encode() if self.api_key else None


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_security(settings: ServerSettings) -> None:
    """The auth rule: no API key is only acceptable with an explicit ``--allow-no-auth``."""
    if settings.api_key is not None or settings.allow_no_auth:
        return
    if is_loopback(settings.host):
        raise ConfigError(
            "no API key: set INFERENCE_API_KEY, or pass --allow-no-auth to serve "
            f"{settings.host} without authentication"
        )
    raise ConfigError(
        f"refusing to listen on {settings.host} without an API key: anyone who can reach it "
        "could use the model. Set INFERENCE_API_KEY, or pass --allow-no-auth if that is intended"
    )


def check_paths(settings: ServerSettings) -> None:
    """Fail fast (before importing torch) on paths that cannot possibly load."""
    if settings.model_path is None:
        raise ConfigError("no model: pass --model PATH or set AITK_MODEL_PATH")
    if not (settings.model_path / "config.json").is_file():
        raise ConfigError(f"model folder {settings.model_path} has no config.json (is the path right?)")
    if settings.no_adapter:
        if settings.adapter_path is not None:
            raise ConfigError("--no-adapter and --adapter contradict each other: give one")
    else:
        if settings.adapter_path is None:
            raise ConfigError(
                "no adapter: pass --adapter PATH (or AITK_ADAPTER_PATH); to serve the base model "
                "alone say so with --no-adapter"
            )
        if not (settings.adapter_path / "adapter_config.json").is_file():
            raise ConfigError(
                f"adapter folder {settings.adapter_path} has no adapter_config.json; refusing to "
                "serve the base model in its place (use --no-adapter to do that on purpose)"
            )
    if settings.chat_template is not None and not settings.chat_template.is_file():
        raise ConfigError(f"chat template file {settings.chat_template} does not exist")
    for name in ("ssl_certfile", "ssl_keyfile"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"--{name.replace('_', '-')} {path} does not exist")
