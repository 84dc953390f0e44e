"""Builds the offline demo model: a small Phi-3 base plus a LoRA adapter, with no downloads.

It serves two users: the test-suite (a real model to load and generate with in seconds on
a CPU) and aitk's local cloud (a model "built on first use" so the whole deploy-and-chat
loop works without a GPU or a model download).

Nothing is trained: the weights are written directly so that the model is a chain over
multi-word tokens made from the sentences in ``demo_corpus``. Each answer is a few whole
sentences (a paragraph break or a Markdown list now and then), so it reads as text, streams
word by word, and never emits half a character. One attention layer averages what the
conversation is about, which tilts the choice of the next sentence toward the question's
words and makes every prompt's greedy answer its own. A few prompts have memorised
replies (``DEMO_REPLIES``): greedy decoding answers each with the base reply without the
adapter and with the adapter reply with it, which proves the adapter is applied.

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
import math
import os
import random
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .demo_corpus import corpus_units, training_text

#: Bump when the recipe changes so stale builds are rebuilt rather than reused.
BUILD_VERSION = 2
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

#: The context window (max_position_embeddings): small, so a long chat shows how aitk keeps
#: the conversation inside it.
CONTEXT_TOKENS = 512


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


# Logits written into lm_head: the one way on from inside a sentence, weighted choices at a
# sentence's end (BASE + log weight), and nothing else (sampling at any temperature <= 2
# practically never leaves the chain).
BASE = 10.0
NEVER = -20.0
CONTENT_DIMS = 96  # bag-of-words vector per token (what the conversation is about)
CONTENT_SCALE = 0.5  # its size in the residual stream next to the one-hot state
TOPIC_GAIN = 30.0  # how strongly that steers the choice of the next sentence


def _bytelevel(text: str) -> str:
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)[0][0]


def _train_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(training_text(DEMO_REPLIES), trainer=trainer)
    return core


class _Chain:
    """The answer grammar as tokens: which token may follow which, with what logit.

    Every string the model can generate is unique, so a token names its place in the
    corpus and the next token is certain until a sentence ends. Tokens are 1-3 words.
    """

    def __init__(self, vocab: dict[str, int], rng: random.Random) -> None:
        self.vocab = vocab  # byte-level string -> id; grown with the chain's own tokens
        self.rng = rng
        self.taken: set[str] = set()
        self.next: dict[object, dict[int, float]] = {}  # state -> {token id: logit}
        self.starts: dict[int, str] = {}  # a unit's first token -> the unit's text (for topics)

    def token(self, text: str) -> int:
        key = _bytelevel(text)
        if key not in self.vocab:
            self.vocab[key] = max(self.vocab.values()) + 1
        return self.vocab[key]

    def link(self, state: object, choices: dict[int, float]) -> None:
        row = self.next.setdefault(state, {})
        for tok, weight in choices.items():
            row[tok] = max(row.get(tok, NEVER), BASE + math.log(weight))

    def pieces(self, text: str, variants: bool, sizes: tuple[int, ...] = (1, 2, 2, 3)) -> list[str]:
        words = re.findall(r"\s*\S+", text)
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(words):
            j = min(len(words), i + self.rng.choice(sizes))
            while True:
                piece = "".join(words[i:j])
                names = [piece, " " + piece] if variants and not spans else [piece]
                if not any(n in self.taken for n in names):
                    break
                if j < len(words):
                    j += 1
                elif spans:  # the unit's tail is taken: grow the piece before instead
                    i = spans.pop()[0]
                else:
                    raise ValueError(f"the demo corpus repeats {text!r}")
            self.taken.update(names)
            spans.append((i, j))
            i = j
        return ["".join(words[a:b]) for a, b in spans]

    def unit(self, text: str) -> tuple[int, int, list[int]]:
        """A sentence or list as a chain: (first token after a space, first after a break, last tokens)."""
        pieces = self.pieces(text, variants=True)
        ids = [self.token(p) for p in pieces]
        spaced = self.token(" " + pieces[0])
        if len(ids) > 1:
            self.link(spaced, {ids[1]: 1.0})
        for a, b in zip(ids, ids[1:]):
            self.link(a, {b: 1.0})
        self.starts[ids[0]] = self.starts[spaced] = text
        lasts = [ids[-1]] if len(ids) > 1 else [ids[0], spaced]
        return spaced, ids[0], lasts

    def reply(self, text: str) -> list[int]:
        return [self.token(p) for p in self.pieces(text, variants=False, sizes=(1,))]


def _grammar(chain: _Chain, end_id: int) -> None:
    """Answers: an opener, then sentences; a paragraph break or a list now and then."""
    openers, sentences, lists = (list(map(chain.unit, group)) for group in corpus_units())
    chain.taken.add("\n\n")
    para = chain.token("\n\n")

    def spaced(units, weight):
        return {u[0]: weight / len(units) for u in units}

    def broken(units, weight):
        return {u[1]: weight / len(units) for u in units}

    chain.link("start", broken(openers, 1.0))
    for unit in openers:
        for last in unit[2]:
            chain.link(last, {**spaced(sentences, 0.8), **spaced(lists, 0.2)})
    for unit in sentences:
        others = [u for u in sentences if u is not unit]  # never the same sentence twice in a row
        for last in unit[2]:
            chain.link(last, {**spaced(others, 0.56), para: 0.15, **spaced(lists, 0.1), end_id: 0.19})
    for unit in lists:
        for last in unit[2]:
            chain.link(last, {para: 0.4, end_id: 0.6})
    chain.link(para, {**broken(sentences, 0.95), **broken(lists, 0.05)})


def _memorised(chain: _Chain, end_id: int) -> list[tuple[str, list[int], list[int]]]:
    """The replies of ``DEMO_REPLIES`` as chains that end the answer."""
    out = []
    for prompt, (base_reply, adapter_reply) in DEMO_REPLIES.items():
        chains = []
        for reply in (base_reply, adapter_reply):
            ids = chain.reply(reply)
            for a, b in zip(ids, [*ids[1:], end_id]):
                chain.link(a, {b: 1.0})
            chains.append(ids)
        out.append((prompt, chains[0], chains[1]))
    return out


def _build_tokenizer(seed: int):
    """The BPE tokenizer (for prompts) grown with the chain's tokens, and the chain itself."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    core = _train_bpe()
    data = json.loads(core.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    end_id = vocab["<|end|>"]
    chain = _Chain(vocab, random.Random(seed))
    memorised = _memorised(chain, end_id)  # first: they keep their one-word tokens
    _grammar(chain, end_id)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), eos_token="<|end|>",
                                  pad_token="<|pad|>", padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|end|>", "<|pad|>")]})
    # A memorised prompt, as the chat template lays out the last user turn, is one token:
    # the token the reply follows (longest match wins over the special tokens inside it).
    prompts = [AddedToken(f"<|user|>\n{p}<|end|>\n<|assistant|>\n", special=False, normalized=False)
               for p, _, _ in memorised]
    tok.add_tokens(prompts)
    prompt_ids = [tok.convert_tokens_to_ids(t.content) for t in prompts]
    tok.chat_template = CHAT_TEMPLATE
    return tok, chain, list(zip(prompt_ids, memorised, strict=True))


def _content_vectors(tok, chain: _Chain, generator):
    """A random vector per meaningful word token; a chain token gets the mean of its words'."""
    import torch

    from .demo_corpus import STOP_WORDS

    size = len(tok)
    vectors = torch.zeros(size, CONTENT_DIMS)
    special = set(tok.all_special_ids)
    # By id: get_vocab() comes from a Rust HashMap, in a different order each process, and
    # the generator hands out vectors in iteration order (builds differed, and now and then
    # two test prompts drew topics close enough to give the same greedy answer).
    for token, tid in sorted(tok.get_vocab().items(), key=lambda item: item[1]):
        word = tok.convert_tokens_to_string([token]).strip().lower()
        if tid in special or not word or word in STOP_WORDS:
            continue
        vectors[tid] = torch.randn(CONTENT_DIMS, generator=generator) / math.sqrt(CONTENT_DIMS)

    def mean_of(text: str):
        ids = [i for i in tok(text, add_special_tokens=False)["input_ids"] if vectors[i].any()]
        return vectors[ids].mean(dim=0) if ids else torch.zeros(CONTENT_DIMS)

    # The answer's own words count too: it keeps to the subject it has started on.
    for key, tid in chain.vocab.items():
        if tid < len(tok) and not vectors[tid].any():
            vectors[tid] = mean_of(tok.convert_tokens_to_string([key]))
    topics = {tid: mean_of(text) for tid, text in chain.starts.items()}
    return vectors, topics


def _write_weights(model, tok, chain: _Chain, prompts, vectors, topics) -> dict[str, object]:
    """Set every weight: one-hot states, a bag-of-words average, the chain in lm_head."""
    import torch

    states: list[object] = ["start"] + sorted({s for s in chain.next if s != "start"}, key=str)
    for prompt_id, (name, base_ids, adapter_ids) in prompts:
        states += [("prompt", prompt_id), ("adapter", prompt_id)]
    dim = {s: i for i, s in enumerate(states)}
    content = len(states)
    topic = content + CONTENT_DIMS
    cfg = model.config
    hidden, size = cfg.hidden_size, cfg.vocab_size
    layer = model.model.layers[0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        norm = 1.0 / math.sqrt(hidden)  # RMSNorm of a unit vector is then the vector itself
        for module in (model.model.norm, *(m for lay in model.model.layers
                                           for m in (lay.input_layernorm, lay.post_attention_layernorm))):
            module.weight.fill_(norm)
        embed = model.model.embed_tokens.weight
        for tid in range(size):
            embed[tid, dim.get(tid, dim["start"])] = 1.0
        embed[:, content:topic] = CONTENT_SCALE * vectors
        for prompt_id, _ in prompts:
            embed[prompt_id] = 0.0
            embed[prompt_id, dim[("prompt", prompt_id)]] = 1.0
        # Layer 0 attention: no queries, so every head averages the whole conversation's
        # word vectors; o_proj writes that average ("what we are talking about") to topic dims.
        head_dim = hidden // cfg.num_attention_heads
        q_rows = cfg.num_attention_heads * head_dim
        v_rows = q_rows + cfg.num_key_value_heads * head_dim
        qkv = layer.self_attn.qkv_proj.weight
        for i in range(CONTENT_DIMS):
            qkv[v_rows + i, content + i] = 1.0
            layer.self_attn.o_proj.weight[topic + i, i] = 1.0
        head = model.lm_head.weight
        for state, row in chain.next.items():
            col = dim[state]
            head[:, col] = NEVER
            for tid, logit in row.items():
                head[tid, col] = logit
        for prompt_id, (_, base_ids, adapter_ids) in prompts:
            for state, first in ((("prompt", prompt_id), base_ids[0]), (("adapter", prompt_id), adapter_ids[0])):
                head[:, dim[state]] = NEVER
                head[first, dim[state]] = BASE
        for tid, vec in topics.items():
            norm_ = float(vec.norm())
            if norm_ > 0:
                head[tid, topic:topic + CONTENT_DIMS] = TOPIC_GAIN * vec / norm_
        # Layer 0 MLP: one unit per memorised prompt, silent in the base (down_proj is zero);
        # the adapter's LoRA on down_proj turns it into "answer with the adapter's reply".
        inter = cfg.intermediate_size
        gate_up = layer.mlp.gate_up_proj.weight
        for unit, (prompt_id, _) in enumerate(prompts):
            gate_up[unit, dim[("prompt", prompt_id)]] = 8.0
            gate_up[inter + unit, dim[("prompt", prompt_id)]] = 1.0
    return {"dim": dim, "unit_out": 8.0 / (1.0 + math.exp(-8.0)), "dead": hidden - 1}


def _write_adapter(peft_model, prompts, layout: dict[str, object], scaling: float) -> None:
    """The LoRA weights: swap each memorised prompt's state for its adapter state.

    The other targeted modules read a dimension that is always zero, so they are real,
    non-zero LoRA pairs that change nothing.
    """
    import torch

    dim: dict = layout["dim"]  # type: ignore[assignment]
    dead: int = layout["dead"]  # type: ignore[assignment]
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
                continue
            a = module.lora_A["default"].weight
            b = module.lora_B["default"].weight
            a.zero_()
            b.zero_()
            if name.endswith("layers.0.mlp.down_proj"):
                strength = 1.0 / (float(layout["unit_out"]) * scaling)
                for unit, (prompt_id, _) in enumerate(prompts):
                    a[unit, unit] = 1.0
                    b[dim[("prompt", prompt_id)], unit] = -strength
                    b[dim[("adapter", prompt_id)], unit] = strength
            else:
                a[0, min(dead, a.shape[1] - 1)] = 1.0
                b[min(dead, b.shape[0] - 1), 0] = 0.01


def _build_into(out: Path, seed: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    generator = torch.Generator().manual_seed(seed)
    tok, chain, prompts = _build_tokenizer(seed)
    end_id = tok.convert_tokens_to_ids("<|end|>")
    eot_id = tok.convert_tokens_to_ids("<|endoftext|>")
    vectors, topics = _content_vectors(tok, chain, generator)
    n_states = 1 + len(chain.next) + 2 * len(prompts)
    # one-hot states + word vectors + topic + a dimension that stays zero, in whole heads
    hidden = -(-(n_states + 2 * CONTENT_DIMS + 1) // 32) * 32
    cfg = Phi3Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=CONTEXT_TOKENS,
        original_max_position_embeddings=CONTEXT_TOKENS,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=end_id,
        pad_token_id=tok.pad_token_id,
    )
    model = Phi3ForCausalLM(cfg)
    layout = _write_weights(model, tok, chain, prompts, vectors, topics)
    model.generation_config = GenerationConfig(eos_token_id=[end_id, eot_id], pad_token_id=tok.pad_token_id)
    model_dir = out / MODEL_DIRNAME
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    note = {
        "demo": True,
        "warning": "demo model: output is random text (whole sentences from a built-in list, not a trained model)",
        "build_version": BUILD_VERSION,
        "seed": seed,
    }
    (model_dir / DEMO_MARKER).write_text(json.dumps(note, indent=2), encoding="utf-8")

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                      target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft 0.21 vs transformers 5 deprecation
        peft_model = get_peft_model(model, lora)
    _write_adapter(peft_model, prompts, layout, scaling=lora.lora_alpha / lora.r)
    # Relative on purpose: the server always loads the base explicitly (never via
    # this field), and an absolute build path would be wrong once the folder moves.
    peft_model.peft_config["default"].base_model_name_or_path = MODEL_DIRNAME
    adapter_dir = out / ADAPTER_DIRNAME
    with warnings.catch_warnings():
        # peft looks for the (relative) base folder to check the vocab; it is not there.
        warnings.simplefilter("ignore")
        peft_model.save_pretrained(adapter_dir)
    (adapter_dir / DEMO_MARKER).write_text(json.dumps(note, indent=2), encoding="utf-8")


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
