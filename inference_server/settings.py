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
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .adapter_spec import AdapterSpec, parse_adapters

DEFAULT_PORT = 7860  # AI Toolkit's inference port


class ConfigError(Exception):
    """A setting makes start-up impossible; the message says which and what to do."""


_ADAPTER_ENV = ("aitk_adapters", "aitk_adapter_path")


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AITK_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    model_path: Path | None = Field(None, description="folder of the base model (config.json, weights, tokenizer)")
    adapters: Annotated[list[AdapterSpec], NoDecode, BeforeValidator(parse_adapters)] = Field(
        default_factory=list,
        validation_alias=AliasChoices("AITK_ADAPTERS", "AITK_ADAPTER_PATH"),
        description="PEFT LoRA adapter folders, each PATH or NAME=PATH (model id NAME)",
    )
    adapter_name: str | None = Field(None, description="model id of a single unnamed adapter (default: its folder name)")
    serve_base: bool = Field(False, description="keep the adapters unmerged and serve the base model too")
    served_model_name: str | None = Field(None, description="model id of the base (default: its folder name)")
    no_adapter: bool = Field(False, description="serve the base model alone (must be explicit)")
    merge: bool | None = Field(
        None, description="merge the adapter into the weights (default: a single adapter, unless quantized or serve_base)"
    )
    chat_template: Path | None = Field(None, description="Jinja chat template file, if the tokenizer has none")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_packed: Literal["auto", "on", "off"] = Field(
        "auto",
        description="pack float32 linear weights for batched decode on a CPU (oneDNN; auto: when the copy "
        "fits in a quarter of memory)",
    )
    cpu_skip_padding: bool = Field(
        True, description="on a CPU, batched decode attention reads each row's own KV cells, not the batch's padding"
    )
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
        4096, ge=1, description="most prompt tokens (padding included) in one prefill forward of several prompts "
        "(what a step prefills is bounded by prefill_chunk)"
    )
    prefill_chunk: int = Field(
        0, ge=0, le=1_048_576,
        description="prompt tokens prefilled between two decode steps; a longer prompt is prefilled in pieces "
        "so running streams keep flowing (0: by device, 32 on a CPU, 512 on a GPU)",
    )
    prefix_cache_tokens: int | None = Field(
        None, ge=0,
        description="tokens of finished requests' KV cache kept for a later prompt that starts the same "
        "(a chat's next turn); default: the context length; 0: off",
    )
    min_step_interval: float = Field(
        0.0, ge=0.0, le=1.0,
        description="least seconds per decode step, to slow a tiny model to a readable pace "
        "(the local cloud sets it for its demo model; 0: full speed)",
    )
    header_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a client has to send a request's head (line + headers)"
    )
    body_timeout: float = Field(
        60.0, gt=0, le=3600,
        description="seconds a client has to send a request's body once its head is complete",
    )
    keep_alive_timeout: float = Field(
        75.0, gt=0, le=3600,
        description="seconds an idle kept-alive connection stays open (above common proxies' 60 s idle timeout)",
    )
    max_connections: int = Field(
        512, ge=1, description="open connections; at the limit the oldest idle one is closed for a new one"
    )
    max_header_bytes: int = Field(16_384, ge=1024, le=1_048_576, description="bytes buffered for an unfinished request head (above: 400)")
    load_failure_exit_s: float = Field(
        30.0,
        description="after a failed load, answer 503 with the error this long, then exit 3 (<0: never exit)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="before")
    @classmethod
    def _adapter_path_alias(cls, data: Any) -> Any:
        # ``adapter_path=`` (one folder) is the older keyword; it is a value given in code,
        # so it outranks the environment the way ``adapters=`` does.
        if isinstance(data, dict) and "adapter_path" in data:
            data = {k: v for k, v in data.items() if k.lower() not in _ADAPTER_ENV}
            if "adapters" in data:
                raise ValueError("give adapters or adapter_path, not both")
            data["adapters"] = data.pop("adapter_path")
        return data

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
    def adapter_path(self) -> Path | None:
        """The first adapter's folder (None without one)."""
        return self.adapters[0].path if self.adapters else None

    @property
    def adapter_ids(self) -> list[tuple[str, Path]]:
        """(model id, folder) of each adapter, in the order given: NAME, else
        ``--adapter-name`` for a single adapter, else the folder's name."""
        if self.no_adapter:
            return []
        single = len(self.adapters) == 1
        return [(spec.name or (self.adapter_name if single and self.adapter_name else None)
                 or spec.path.name or "adapter", spec.path) for spec in self.adapters]

    @property
    def adapter_id(self) -> str | None:
        """The first adapter's model id (the default model of a request that names none)."""
        ids = self.adapter_ids
        return ids[0][0] if ids else None

    def merge_default(self, quantized: bool) -> bool:
        """Whether the adapter is merged: only a single one, never with ``serve_base``;
        unless told, merged when the base is not quantized (merged decoding is faster)."""
        if self.merge is not None:
            return self.merge
        return len(self.adapters) == 1 and not self.serve_base and not quantized

    def served_ids(self, merged: bool) -> list[str]:
        """Model ids that answer, adapters first; ConfigError if two would share an id."""
        ids = [model_id for model_id, _ in self.adapter_ids]
        if not merged:  # unmerged, the base is there to serve as well
            ids.append(self.base_id)
        seen: set[str] = set()
        for model_id in ids:
            if model_id in seen:
                raise ConfigError(
                    f"two served models would both be called `{model_id}`: name the adapters "
                    "(--adapter NAME=PATH) or the base (--served-model-name) apart"
                )
            seen.add(model_id)
        return ids

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
        if not settings.adapters:
            raise ConfigError(
                "no adapter: pass --adapter PATH (or AITK_ADAPTER_PATH); to serve the base model "
                "alone say so with --no-adapter"
            )
        check_adapters(settings)
    if settings.chat_template is not None and not settings.chat_template.is_file():
        raise ConfigError(f"chat template file {settings.chat_template} does not exist")
    for name in ("ssl_certfile", "ssl_keyfile"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"--{name.replace('_', '-')} {path} does not exist")


def check_adapters(settings: ServerSettings) -> None:
    """Several adapters, ``--serve-base`` and ``--merge`` agree, ids are distinct, folders exist."""
    several = len(settings.adapters) > 1
    if settings.merge and (several or settings.serve_base):
        raise ConfigError(
            "--merge works with a single adapter and without --serve-base: merging bakes one "
            "adapter into the base, which then can serve neither the base nor another adapter"
        )
    if several and settings.adapter_name:
        raise ConfigError("--adapter-name names a single adapter; with several, name each as --adapter NAME=PATH")
    settings.served_ids(merged=settings.merge_default(quantized=False))
    for model_id, path in settings.adapter_ids:
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(
                f"adapter folder {path} (`{model_id}`) has no adapter_config.json; refusing to "
                "serve the base model in its place (use --no-adapter to do that on purpose)"
            )
