"""Loading a base model, its LoRA adapters and tokenizer for serving (no HTTP, no batching).

Owns the decisions made once at start-up: device and dtype (CUDA bf16, fp16 where bf16 is
unsupported, else CPU fp32), torch threads, merging the adapter, the chat template, the
eos ids, the context length, which model ids are served, and whether this is aitk's demo
build (which it logs loudly).

Model ids (clients and the "compare two models" view rely on them, so they are stable):
each adapter answers as its ``--adapter NAME=PATH`` name, else ``--adapter-name`` (single
adapter), else its folder's name; the base as ``--served-model-name``, else its folder's
name. A single adapter is merged by default and then the base is not served; unmerged
(``--serve-base``, ``--no-merge``, several adapters, a quantized base) the base answers too.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

from . import cpu_attention, cpu_linear
from .settings import ServerSettings, check_paths

log = logging.getLogger("inference_server.engine")


class LoadError(Exception):
    """The model or adapter could not be loaded; the message is meant for the operator."""



@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: Any
    dtype: Any
    base_id: str
    adapters: dict[str, str]  # model id -> peft adapter name, in the order given
    merged: bool
    context_len: int
    eos_ids: frozenset[int]
    demo: bool
    default_temperature: float = 1.0
    default_top_p: float = 1.0
    cache_kwarg: str = "cache"
    pad_id: int = 0  # filler under the attention mask; any id works, the tokenizer's if it has one

    @property
    def adapter_id(self) -> str | None:
        """The first adapter's model id (the default model), None without adapters."""
        return next(iter(self.adapters), None)

    @property
    def peft_adapters(self) -> bool:
        """Adapters live unmerged in a PeftModel, so each row picks its own (or none)."""
        return bool(self.adapters) and not self.merged

    @property
    def served(self) -> dict[str, str | None]:
        """Model id -> the peft adapter its rows run with; None: the weights as loaded
        (the base, or the base with the merged adapter). Adapters first: the first is the
        default model. Exactly the models that answer."""
        if not self.adapters:
            return {self.base_id: None}
        if self.merged:  # the base no longer exists as weights of its own
            return {self.adapter_id: None}
        return {**self.adapters, self.base_id: None}

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt ids through the tokenizer's chat template (ValueError on a template error)."""
        try:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        except Exception as exc:  # jinja raises its own types (e.g. "roles must alternate")
            raise ValueError(f"the chat template rejected the messages: {exc}") from exc
        return list(ids)


def _pick_device_dtype(settings: ServerSettings):
    import torch

    cuda = torch.cuda.is_available() and settings.device != "cpu"
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise LoadError("--device cuda was asked for but torch sees no CUDA device")
    device = torch.device("cuda" if cuda else "cpu")
    if settings.dtype != "auto":
        return device, getattr(torch, settings.dtype)
    if cuda:
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


def load_model(settings: ServerSettings) -> LoadedModel:
    """Load tokenizer, base and adapter as ``settings`` say; LoadError with a clear message."""
    check_paths(settings)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: never reach out for files
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars are noise in a JSON log stream

    threads = settings.threads or max(1, min(8, (os.cpu_count() or 2) - 1))
    device, dtype = _pick_device_dtype(settings)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    model_path = settings.model_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except Exception as exc:
        raise LoadError(f"could not load the tokenizer from {model_path}: {exc}") from exc
    if settings.chat_template is not None:
        tokenizer.chat_template = settings.chat_template.read_text(encoding="utf-8")
    if not getattr(tokenizer, "chat_template", None):
        raise LoadError(
            f"the tokenizer in {model_path} has no chat template; pass --chat-template FILE "
            "(a Jinja template such as the model card's)"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    except Exception as exc:
        raise LoadError(f"could not load the model from {model_path}: {exc}") from exc
    quantized = getattr(model.config, "quantization_config", None) is not None
    if not quantized:
        model.to(device)
    adapters: dict[str, str] = {}
    merged = False
    if settings.adapter_ids:
        merged = settings.merge_default(quantized)
        settings.served_ids(merged)  # ids must be distinct before any request can name one
        model, adapters = _load_adapters(model, settings.adapter_ids)
        if merged:
            model = model.merge_and_unload()
    model.eval()
    packing = cpu_linear.pack_linears(model, settings.cpu_packed) if device.type == "cpu" else None
    skips_padding = device.type == "cpu" and settings.cpu_skip_padding and cpu_attention.use_for(model)

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    context_len = int(getattr(config, "max_position_embeddings", 0) or 0)
    if context_len <= 0:
        context_len = min(int(getattr(tokenizer, "model_max_length", 2048)), 1 << 20)
    eos: set[int] = set()
    for source in (getattr(model, "generation_config", None), config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        eos.update([value] if isinstance(value, int) else (value or []))
    gen_file = model_path / "generation_config.json"
    gen_raw = json.loads(gen_file.read_text(encoding="utf-8")) if gen_file.is_file() else {}
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(core.forward).parameters
    demo = any((path / "aitk_demo.json").is_file() for path in [model_path, *(p for _, p in settings.adapter_ids)])
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        base_id=settings.base_id,
        adapters=adapters,
        merged=merged,
        context_len=context_len,
        eos_ids=frozenset(eos),
        demo=demo,
        default_temperature=float(gen_raw.get("temperature", 1.0)) if gen_raw.get("do_sample", True) else 0.0,
        default_top_p=float(gen_raw.get("top_p", 1.0)),
        cache_kwarg="cache" if "cache" in params else "past_key_values",
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0),
    )
    log.info(
        "model loaded: base=%s adapters=%s merged=%s device=%s dtype=%s context=%d threads=%s",
        loaded.base_id, ",".join(adapters) or "-", merged, device, str(dtype).removeprefix("torch."),
        context_len, threads if device.type == "cpu" else "-",
    )
    if packing is not None:
        log.info("%s", cpu_linear.describe(packing))
    if skips_padding:
        log.info("batched decode attention skips the KV cache's padding (cpu_attention)")
    if demo:
        log.warning("demo model: output is random text (aitk demo build, not a trained model)")
    return loaded


def _load_adapters(model, adapter_ids: list[tuple[str, Any]]) -> tuple[Any, dict[str, str]]:
    """``model`` wrapped in a PeftModel holding every adapter, and model id -> peft adapter name."""
    from peft import PeftModel

    peft_model = None
    names: dict[str, str] = {}
    for index, (model_id, path) in enumerate(adapter_ids):
        # Model ids may hold "." (not allowed in a module name), so peft gets its own names.
        peft_name = f"adapter{index}"
        try:
            # The base is given explicitly: the adapter's base_model_name_or_path is the
            # trainer's absolute path and means nothing on this machine.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft 0.21 vs transformers 5, on every load
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(model, path, adapter_name=peft_name, is_trainable=False)
                else:
                    peft_model.load_adapter(path, adapter_name=peft_name, is_trainable=False)
        except Exception as exc:
            raise LoadError(f"could not load the adapter `{model_id}` from {path}: {exc}") from exc
        marker = f".{peft_name}."
        if not any(marker in name for name, _ in peft_model.named_parameters()):
            raise LoadError(f"the adapter in {path} matched no layer of the model")
        names[model_id] = peft_name
    peft_model.set_adapter("adapter0")  # rows that name no adapter run with the first one
    return peft_model, names


def drop_leaked_adapter_hooks(model) -> None:
    """peft 0.21 registers the pre-hooks that feed ``adapter_names`` to each LoRA layer and
    removes them after a bare ``yield`` (huggingface/peft#3475, fix open in #3477): a forward
    that raises leaves them in place, and every later forward then gets the failed batch's
    adapter names ("Length of `adapter_names` should be the same as the number of inputs").
    Remove them so one failed step does not break the model for everyone after it."""
    for module in model.modules():
        hooks = module._forward_pre_hooks
        for key, hook in list(hooks.items()):
            if getattr(getattr(hook, "func", None), "__name__", "") == "_adapter_names_pre_forward_hook":
                del hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)
