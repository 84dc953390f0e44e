"""Benchmark (not part of pytest): how to decode rows of several LoRA adapters and the base.

    python benchmarks/adapter_batching_bench.py                  # Phi-3 shape, hidden 1024, 8 layers
    python benchmarks/adapter_batching_bench.py --hidden 256 --layers 4 --rounds 30

One decode step (one new token per row, a KV cache of ``--cache`` tokens, one torch thread)
for 8 rows -- 3 of adapter a, 3 of adapter b, 2 of the base -- done two ways, in
interleaved rounds (the machine may be shared) and compared by medians:

- mixed: one forward for all 8 rows, peft's per-row ``adapter_names`` (what the engine does)
- grouped: one forward per adapter group (3 rows a, 3 rows b, 2 rows base)

plus, for scale, 8 rows of a single active adapter (the cost of a step with one adapter).
Prints milliseconds per step and the ratio grouped / mixed (> 1: mixed is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--cache", type=int, default=128, help="tokens already in each row's KV cache")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DynamicCache, Phi3Config, Phi3ForCausalLM

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # peft 0.21 vs transformers 5 deprecations
    torch.manual_seed(0)
    heads = max(1, args.hidden // 64)
    cfg = Phi3Config(vocab_size=32064, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                     num_hidden_layers=args.layers, num_attention_heads=heads, num_key_value_heads=heads,
                     max_position_embeddings=4096)
    lora = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, task_type="CAUSAL_LM",
                      target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"])
    model = get_peft_model(Phi3ForCausalLM(cfg).eval(), lora, adapter_name="a")
    model.add_adapter("b", lora)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; a trained adapter's is not
            torch.nn.init.normal_(param, std=0.02)
    model.eval()
    model.base_model.set_adapter("a")

    def step(rows: int, kwargs: dict | None = None, ctx=contextlib.nullcontext):
        """A callable running one decode step of ``rows`` rows over a fixed-length cache."""
        kwargs = kwargs or {}
        cache = DynamicCache()
        with torch.inference_mode(), ctx():
            model(input_ids=torch.randint(0, 32000, (rows, args.cache)), use_cache=True, past_key_values=cache,
                  logits_to_keep=1, **kwargs)
        prefix = [(layer.keys, layer.values) for layer in cache.layers]

        def run() -> None:
            for layer, (keys, values) in zip(cache.layers, prefix):
                layer.keys, layer.values = keys, values  # every step sees the same cache length
            with ctx():
                model(input_ids=torch.randint(0, 32000, (rows, 1)), use_cache=True, past_key_values=cache,
                      logits_to_keep=1, **kwargs)
        return run

    ways = {
        "mixed: 1 forward, per-row adapter_names": [
            step(8, {"adapter_names": ["a"] * 3 + ["b"] * 3 + ["__base__"] * 2})],
        "grouped: 3 forwards (3 a, 3 b, 2 base)": [
            step(3, {"adapter_names": ["a"] * 3}), step(3, {"adapter_names": ["b"] * 3}),
            step(2, ctx=model.disable_adapter)],
        "for scale: 8 rows, one active adapter": [step(8)],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    with torch.inference_mode():
        for runs in ways.values():  # warm-up
            for run in runs:
                run()
        for _ in range(args.rounds):
            for name, runs in ways.items():
                started = time.perf_counter()
                for run in runs:
                    run()
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    mixed, grouped = medians["mixed: 1 forward, per-row adapter_names"], medians["grouped: 3 forwards (3 a, 3 b, 2 base)"]
    print(f"Phi-3 shape hidden={args.hidden} layers={args.layers}, LoRA r={args.rank} on every linear, "
          f"cache {args.cache} tokens, 1 thread, median of {args.rounds} interleaved rounds")
    for name, value in medians.items():
        print(f"  {name:44s} {value * 1000:8.1f} ms/step")
    print(f"grouped / mixed = {grouped / mixed:.2f}  (> 1: one mixed batch is faster)")


if __name__ == "__main__":
    main()
