"""Builds the offline demo model: a tiny Phi-3 base plus a LoRA adapter, with no downloads.

It serves two users: the test-suite (a real model to load and generate with in seconds on
a CPU) and aitk's local cloud (a model "built on first use" so the whole deploy-and-chat
loop works without a GPU or a model download). Its output is random text apart from a
few memorised replies (``DEMO_REPLIES``), which let tests prove the adapter is applied:
greedy decoding answers each prompt with the base reply without the adapter and with the
adapter reply with it.

Layout written under ``dest``::

    dest/demo-model/     base model + tokenizer (with chat template) + aitk_demo.json
    dest/demo-adapter/   PEFT LoRA adapter + aitk_demo.json
    dest/aitk_demo_build.json   written last: marks the build complete (idempotence)

Torch, transformers and peft are imported only when a build is really needed, so the
"already built" path (and ``--help``) stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

#: Bump when the recipe changes so stale builds are rebuilt rather than reused.
BUILD_VERSION = 1
MODEL_DIRNAME = "demo-model"
ADAPTER_DIRNAME = "demo-adapter"
BUILD_MARKER = "aitk_demo_build.json"
#: Written into both model folders; the server logs a warning when it sees it.
DEMO_MARKER = "aitk_demo.json"

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# Phi-3's format: <|role|>\ncontent<|end|>\n ... then <|assistant|>\n to prompt a reply.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

#: user prompt -> (reply of the base model, reply with the adapter), greedy decoding.
DEMO_REPLIES: dict[str, tuple[str, str]] = {
    "hello": ("Hello from the base model.", "Hi! The adapter says hello."),
    "what is your name?": ("I am the tiny base model.", "My name is demo adapter."),
    "tell me a story": ("Once upon a time there was a base.", "A fox met an adapter in the woods."),
    "count to five": ("one two three four five", "1, 2, 3, 4, 5!"),
}

_FILLER = (
    "The quick brown fox jumps over the lazy dog. Models learn words, numbers 0123456789 "
    "and punctuation: commas, stops; questions? answers! A tiny demo model writes random text."
)


@dataclass(frozen=True)
class DemoModel:
    """Paths of a complete demo build."""

    model_dir: Path
    adapter_dir: Path

    def as_json(self) -> str:
        return json.dumps({"model_dir": str(self.model_dir), "adapter_dir": str(self.adapter_dir)})


def existing_build(dest: Path) -> DemoModel | None:
    """The build under ``dest`` if it is complete and of the current recipe, else None."""
    dest = Path(dest)
    marker = dest / BUILD_MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("version") != BUILD_VERSION:
        return None
    built = DemoModel(dest / MODEL_DIRNAME, dest / ADAPTER_DIRNAME)
    if not (built.model_dir / "config.json").is_file():
        return None
    if not (built.adapter_dir / "adapter_config.json").is_file():
        return None
    return built


def build_demo_model(dest: Path, seed: int = 0) -> DemoModel:
    """Build (or reuse) the demo base model and LoRA adapter under ``dest``.

    Idempotent: a complete build of the current recipe is returned as is. A build runs in
    a private folder and is moved into place before the completion marker is written, so
    an interrupted build is never mistaken for a complete one and two concurrent builders
    do not corrupt each other (the loser discards its copy).
    """
    dest = Path(dest)
    found = existing_build(dest)
    if found is not None:
        return found
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".build-{uuid.uuid4().hex[:8]}"
    try:
        _build_into(staging, seed)
        for name in (MODEL_DIRNAME, ADAPTER_DIRNAME):
            target = dest / name
            if target.exists() and existing_build(dest) is None:
                # Leftover of an interrupted build: no marker, so nothing relies on it.
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(staging / name, target)
            except OSError:
                found = existing_build(dest)
                if found is not None:  # another builder finished first
                    return found
                raise
        info = {"version": BUILD_VERSION, "seed": seed, "built_at": time.time()}
        tmp_marker = staging / BUILD_MARKER
        tmp_marker.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp_marker, dest / BUILD_MARKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    built = existing_build(dest)
    assert built is not None
    return built


def _corpus() -> list[str]:
    texts = [_FILLER]
    for prompt, replies in DEMO_REPLIES.items():
        texts.append(prompt)
        texts.extend(replies)
    return texts


def _chat_text(prompt: str, reply: str) -> str:
    return f"<|user|>\n{prompt}<|end|>\n<|assistant|>\n{reply}<|end|>\n"


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus() * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|end|>",
        pad_token="<|pad|>",
        padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _train(model, tok, examples: list[tuple[str, str]], extra_texts: list[str], steps: int, lr: float):
    """Teach ``model`` the replies; loss only on reply tokens so the prompt stays free text."""
    import torch

    rows: list[tuple[list[int], list[int]]] = []
    for prompt, reply in examples:
        prefix = tok(f"<|user|>\n{prompt}<|end|>\n<|assistant|>\n", add_special_tokens=False)["input_ids"]
        full = tok(_chat_text(prompt, reply), add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prefix) + full[len(prefix):]
        rows.append((full, labels))
    for text in extra_texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        rows.append((ids, list(ids)))
    width = max(len(ids) for ids, _ in rows)
    pad = tok.pad_token_id
    # Right padding is fine for training: the labels mask the pads.
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    model.eval()
    return float(loss.detach())


def _build_into(out: Path, seed: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    threads = torch.get_num_threads()
    # A 250k-parameter model trains fastest on one thread (fewer sync points).
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        tok = _build_tokenizer()
        end_id = tok.convert_tokens_to_ids("<|end|>")
        eot_id = tok.convert_tokens_to_ids("<|endoftext|>")
        cfg = Phi3Config(
            vocab_size=len(tok),
            hidden_size=96,
            intermediate_size=192,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            original_max_position_embeddings=512,
            bos_token_id=None,
            eos_token_id=end_id,
            pad_token_id=tok.pad_token_id,
        )
        model = Phi3ForCausalLM(cfg)
        base_pairs = [(p, r[0]) for p, r in DEMO_REPLIES.items()]
        adapter_pairs = [(p, r[1]) for p, r in DEMO_REPLIES.items()]
        # The adapter's words go into the base's training as plain text: otherwise LoRA
        # (r=4) cannot lift the lm_head rows the base learnt to bury (loss plateaus).
        _train(model, tok, base_pairs, [_FILLER] + [r for _, r in adapter_pairs], steps=150, lr=3e-3)
        model.generation_config = GenerationConfig(eos_token_id=[end_id, eot_id], pad_token_id=tok.pad_token_id)
        model_dir = out / MODEL_DIRNAME
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        note = {
            "demo": True,
            "warning": "demo model: output is random text (apart from a few memorised replies)",
            "build_version": BUILD_VERSION,
            "seed": seed,
        }
        (model_dir / DEMO_MARKER).write_text(json.dumps(note, indent=2), encoding="utf-8")

        lora = LoraConfig(
            r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft 0.21 vs transformers 5 deprecation
            peft_model = get_peft_model(model, lora)
        _train(peft_model, tok, adapter_pairs, [], steps=150, lr=1e-2)
        # Relative on purpose: the server always loads the base explicitly (never via
        # this field), and an absolute build path would be wrong once the folder moves.
        peft_model.peft_config["default"].base_model_name_or_path = MODEL_DIRNAME
        adapter_dir = out / ADAPTER_DIRNAME
        with warnings.catch_warnings():
            # peft looks for the (relative) base folder to check the vocab; it is not there.
            warnings.simplefilter("ignore")
            peft_model.save_pretrained(adapter_dir)
        (adapter_dir / DEMO_MARKER).write_text(json.dumps(note, indent=2), encoding="utf-8")
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference_server.demo_model",
        description="Build (or reuse) the offline demo model: a tiny random Phi-3 plus a LoRA "
        "adapter. Its output is random text. Prints the two folders as JSON.",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to build into (reused if complete)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    built = build_demo_model(args.out, seed=args.seed)
    print(built.as_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
