"""Packed linear weights for batched decode on a CPU (``inference_server/cpu_linear.py``),
on the real tiny model: which layers are packed, that 2-32-row inputs really take oneDNN's
path and one row does not, that the answers do not change, and when nothing is packed."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from inference_server import cpu_linear
from inference_server.engine import Engine
from inference_server.handles import SamplingParams
from inference_server.loading import load_model
from inference_server.settings import ServerSettings
from tests.fixtures_model import make_settings


def onednn_calls(fn) -> int:
    """How many oneDNN linear calls ``fn`` made, read from torch's own profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "mkldnn::_linear_pointwise")


def plain_linears(model) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is nn.Linear]


def packed(model) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is cpu_linear.packed_class()]


@pytest.fixture(scope="module")
def pair(tiny_model):
    """The same merged model loaded twice: packed, and not."""
    on = load_model(make_settings(tiny_model, merge=True, cpu_packed="on"))
    off = load_model(make_settings(tiny_model, merge=True, cpu_packed="off"))
    return on, off


def test_every_plain_linear_is_packed_and_only_batched_inputs_take_onednn(pair):
    on, off = pair
    assert packed(off.model) == [] and plain_linears(on.model) == []
    names = packed(on.model)
    assert "lm_head" in names and any("mlp" in n for n in names) and any("self_attn" in n for n in names)
    layer = on.model.get_submodule(names[0])
    with torch.inference_mode():
        # 40: 8 decode rows and a 32-token prefill piece in one forward (fold.py).
        for rows, expected in [(1, 0), (2, 1), (8, 1), (32, 1), (40, 1), (128, 1), (129, 0), (400, 0)]:
            x = torch.randn(rows, 1, layer.in_features)
            assert onednn_calls(lambda x=x: layer(x)) == expected, rows
            ref = nn.functional.linear(x, layer.weight, layer.bias)
            torch.testing.assert_close(layer(x), ref, rtol=1e-4, atol=1e-5)


def test_a_batched_decode_forward_gives_the_logits_of_torch_own_path(pair):
    on, off = pair
    ids = torch.randint(0, on.model.config.vocab_size, (6, 24))
    with torch.inference_mode():
        a = on.model(input_ids=ids, logits_to_keep=1).logits  # prefill-sized: torch's path
        calls = onednn_calls(lambda: on.model(input_ids=ids[:, :1], logits_to_keep=1))
        b = on.model(input_ids=ids[:, :1], logits_to_keep=1).logits
        torch.testing.assert_close(a, off.model(input_ids=ids, logits_to_keep=1).logits)
        torch.testing.assert_close(b, off.model(input_ids=ids[:, :1], logits_to_keep=1).logits, rtol=1e-4, atol=1e-4)
    assert calls == len(packed(on.model))  # every layer of the 6-row step went through oneDNN


async def test_batched_greedy_answers_are_the_same_packed_or_not(pair):
    texts = []
    for loaded in pair:
        engine = Engine(loaded, max_batch_size=8)
        engine.start()
        try:
            handles = [engine.submit(loaded.encode_chat([{"role": "user", "content": f"tell me about {w}"}]),
                                     SamplingParams(max_tokens=24, temperature=0.0), use_adapter=None, timeout_s=60)
                       for w in ["cats", "the sea", "tea", "rain", "maps", "bread"]]
            texts.append([(await h.result())[0] for h in handles])
        finally:
            engine.stop()
        assert engine.peak_batch >= 2  # the answers really were decoded together
    assert texts[0] == texts[1] and all(texts[0])


def test_unmerged_adapters_pack_the_base_layers_and_leave_lora_alone(tiny_model):
    loaded = load_model(make_settings(tiny_model, merge=False, cpu_packed="on"))
    names = packed(loaded.model)
    assert names and all(n.endswith("base_layer") or n.endswith("lm_head") for n in names)
    assert not any(".lora_" in n for n in names)
    assert any(".lora_A." in n for n in plain_linears(loaded.model))


def test_nothing_is_packed_off_in_bfloat16_or_when_memory_is_short(tiny_model):
    assert packed(load_model(make_settings(tiny_model, cpu_packed="off")).model) == []
    bf16 = load_model(make_settings(tiny_model, merge=True, dtype="bfloat16", cpu_packed="on"))
    assert packed(bf16.model) == []
    assert cpu_linear.pack_linears(bf16.model, "on").reason == "weights are not float32"

    model = load_model(make_settings(tiny_model, merge=True, cpu_packed="off")).model
    size = sum(m.weight.numel() * 4 for _, m in model.named_modules() if type(m) is nn.Linear)
    short = cpu_linear.pack_linears(model, "auto", memory=4 * size - 1)
    assert (short.layers, packed(model)) == (0, []) and "quarter of memory" in short.reason
    roomy = cpu_linear.pack_linears(model, "auto", memory=4 * size)
    assert roomy.layers == len(packed(model)) > 0 and roomy.extra_bytes == size
    cpu_linear.unpack_linears(model)
    assert packed(model) == [] and len(plain_linears(model)) == roomy.layers


def test_the_setting_comes_from_the_flag_or_the_environment(monkeypatch):
    from inference_server.__main__ import build_parser

    assert build_parser().parse_args(["--cpu-packed", "off"]).cpu_packed == "off"
    monkeypatch.setenv("AITK_CPU_PACKED", "on")
    assert ServerSettings(model_path="m", no_adapter=True).cpu_packed == "on"
    monkeypatch.setenv("AITK_CPU_PACKED", "sometimes")
    with pytest.raises(ValueError, match="cpu_packed"):
        ServerSettings(model_path="m", no_adapter=True)


def test_auto_counts_a_container_memory_limit_not_the_host_memory(tmp_path, monkeypatch):
    limit = tmp_path / "memory.max"
    monkeypatch.setattr(cpu_linear, "CGROUP_LIMITS", (str(limit),))
    host = cpu_linear._physical_memory()  # no limit file: the machine's memory
    assert host > 1 << 28
    limit.write_text("1048576\n")
    assert cpu_linear._physical_memory() == 1 << 20
    limit.write_text("max\n")  # cgroup v2's "no limit"
    assert cpu_linear._physical_memory() == host


def test_a_two_row_step_goes_to_onednn_as_three_rows_and_gives_torch_own_logits(pair):
    # oneDNN's 2-row kernel was slower than its 3-row one on wide layers (a 2-row decode step
    # of the benchmark model cost 50-55 ms against 40 ms for 3 rows).
    from torch.profiler import ProfilerActivity, profile

    on, off = pair
    ids = torch.randint(0, on.model.config.vocab_size, (2, 1))
    with torch.inference_mode():
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            logits = on.model(input_ids=ids, logits_to_keep=1).logits
        expected = off.model(input_ids=ids, logits_to_keep=1).logits
    rows = [e.input_shapes[0][0] for e in prof.events() if e.name == "mkldnn::_linear_pointwise"]
    assert len(rows) == len(packed(on.model)) and set(rows) == {3}, rows
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
