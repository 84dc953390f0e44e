"""Pydantic models of the OpenAI chat-completions wire format, as far as this server speaks it.

Requests accept unknown fields (clients send many optional extras) but reject the ones
whose meaning this server cannot honour (n > 1, logprobs, tools, penalties, JSON mode)
rather than silently ignoring them. Responses are built as plain dicts by the helpers
at the bottom, because the SSE path must serialise fast and exactly (``usage: null`` is
sent only when usage was asked for).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# A seed is a signed 64-bit integer, as in vLLM; torch.Generator.manual_seed takes
# [-2**63, 2**64 - 1] and raises beyond it, so 2**64 must be refused here, not in the engine.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content parts of type {part.type!r} are not supported (text only)")
            parts.append(part.text)
        return "".join(parts)

    def for_template(self) -> dict[str, str]:
        # "developer" is OpenAI's newer name for the system role; chat templates know "system".
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    # Numbers and flags are strict (as OpenAI's API: "0.5" is not a number) and finite.
    max_tokens: int | None = Field(None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)
    # Below GREEDY_BELOW_TEMPERATURE (1e-5) the engine decodes greedily, as vLLM does.
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False, strict=True)
    # Any top_p in (0, 1] is executable: the most likely token always stays in the nucleus.
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False, strict=True)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, strict=True)
    stream: bool = Field(False, strict=True)
    stream_options: StreamOptions | None = None
    n: int = Field(1, strict=True)
    user: str | None = None
    # vLLM extension: keep generating through eos (benchmarks want a fixed length).
    ignore_eos: bool = Field(False, strict=True)
    logprobs: bool | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 16:
            raise ValueError("at most 16 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    # Options this server cannot honour are refused, each naming its field (the error's param).
    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("n must be 1: this server returns one choice per request")
        return value

    @field_validator("logprobs", "tools", "frequency_penalty", "presence_penalty")
    @classmethod
    def _not_supported(cls, value: Any, info: ValidationInfo) -> Any:
        if value:  # false, empty and 0 mean "not asked for"; NaN is truthy, so refused too
            raise ValueError(f"{info.field_name} is not supported by this server")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value and value.get("type", "text") != "text":
            raise ValueError("response_format other than text is not supported by this server")
        return value

    @property
    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# ------------------------------------------------------------------ response builders
def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(cid: str, created: int, model: str, text: str, finish_reason: str,
               prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None,
          with_usage_field: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field:  # OpenAI sends "usage": null on every chunk once usage was asked for
        body["usage"] = None
    return body


def usage_chunk(cid: str, created: int, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def model_card(model_id: str, parent: str | None, max_model_len: int, created: int | None = None,
               **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": created or int(time.time()),
        "owned_by": "aitk",
        "root": model_id,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [],
        **extra,
    }


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
