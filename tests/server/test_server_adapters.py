"""Which models the server answers for: every id in /v1/models answers, ``--serve-base``,
several adapters on one base (vLLM's ``--lora-modules`` shape) batched together, and the
settings forms (repeated ``--adapter``, ``AITK_ADAPTERS``/``AITK_ADAPTER_PATH``)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from inference_server.__main__ import EXIT_CONFIG, main
from inference_server.adapter_spec import AdapterSpec
from inference_server.demo_model import DEMO_REPLIES
from inference_server.loading import LoadError, load_model
from inference_server.settings import ConfigError, ServerSettings, check_paths
from tests.fixtures_model import TinyModel, make_settings, serve

# Long text (eos ignored) is where a row computed with the wrong weights would show; the
# taught prompts are where the demo adapter and the base must differ.
TAUGHT = list(DEMO_REPLIES)[:2]
PROMPTS = ["prompt one", "a second, longer prompt " + "abc " * 6, *TAUGHT]


def models(running) -> list[str]:
    response = httpx.get(running.base_url + "/v1/models", headers=running.headers(), timeout=10)
    assert response.status_code == 200, response.text
    return [card["id"] for card in response.json()["data"]]


async def chat(client: httpx.AsyncClient, running, model: str, prompt: str, **extra) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, **extra}
    response = await client.post(running.base_url + "/v1/chat/completions", json=body,
                                 headers=running.headers(), timeout=60)
    assert response.status_code == 200, (model, response.text)
    answer = response.json()
    assert answer["model"] == model
    return answer["choices"][0]["message"]["content"]


def random_text(client, running, model, prompt):
    return chat(client, running, model, prompt, max_tokens=24, ignore_eos=True)


async def alone_then_together(running, model_ids: list[str]) -> tuple[dict, dict]:
    """Each (model, prompt) asked on its own, then all at once; the two answer sets."""
    pairs = [(m, p) for m in model_ids for p in PROMPTS]
    async with httpx.AsyncClient() as client:
        alone = {pair: await random_text(client, running, *pair) for pair in pairs}
        engine = running.state.engine
        engine.peak_batch = 0
        together = await asyncio.gather(*(random_text(client, running, *pair) for pair in pairs))
    # One model has at most len(PROMPTS) rows, so a larger batch held several models' rows.
    assert engine.peak_batch > len(PROMPTS), "the requests were not decoded together"
    return alone, dict(zip(pairs, together, strict=True))


@pytest.mark.parametrize("config", ["merged-default", "serve-base", "no-adapter", "two-adapters"])
async def test_every_listed_model_answers(tiny_model: TinyModel, second_adapter: Path, config: str):
    settings = {
        "merged-default": dict(merge=None),
        "serve-base": dict(merge=None, serve_base=True),
        "no-adapter": dict(no_adapter=True, adapter_path=None),
        "two-adapters": dict(merge=None, adapters=[tiny_model.adapter_dir, second_adapter]),
    }[config]
    expected = {
        "merged-default": ["demo-adapter"],  # the base is merged away: not listed, not served
        "serve-base": ["demo-adapter", "demo-model"],
        "no-adapter": ["demo-model"],
        "two-adapters": ["demo-adapter", "second-adapter", "demo-model"],
    }[config]
    with serve(make_settings(tiny_model, **settings)) as running:
        listed = models(running)
        assert listed == expected
        assert running.state.loaded.merged == (config == "merged-default")
        async with httpx.AsyncClient() as client:
            for model_id in listed:
                await chat(client, running, model_id, "hello", max_tokens=4)
            # Anything not listed is refused, and the refusal lists what is served.
            response = await client.post(running.base_url + "/v1/chat/completions", headers=running.headers(),
                                         json={"model": "not-served", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 404
            assert all(f"`{m}`" in response.json()["error"]["message"] for m in listed)


async def test_serve_base_answers_base_and_adapter_in_one_batch(tiny_model: TinyModel):
    with serve(make_settings(tiny_model, merge=None, serve_base=True)) as running:
        assert not running.state.loaded.merged
        async with httpx.AsyncClient() as client:
            taught = await asyncio.gather(*(chat(client, running, model, prompt)
                                            for prompt in DEMO_REPLIES for model in ("demo-model", "demo-adapter")))
        assert taught == [reply for replies in DEMO_REPLIES.values() for reply in replies]
        alone, together = await alone_then_together(running, ["demo-model", "demo-adapter"])
    assert together == alone
    assert all(alone["demo-model", p] != alone["demo-adapter", p] for p in TAUGHT)


async def test_two_adapters_and_the_base_each_answer_with_their_own_weights(tiny_model: TinyModel,
                                                                            second_adapter: Path):
    # Alone: the second adapter on a server of its own (a different peft slot and no mixing).
    with serve(make_settings(tiny_model, adapter_path=second_adapter, merge=False)) as running:
        async with httpx.AsyncClient() as client:
            own = {p: await random_text(client, running, "second-adapter", p) for p in PROMPTS}

    adapters = [f"tuned={tiny_model.adapter_dir}", second_adapter]  # NAME=PATH and plain PATH mixed
    with serve(make_settings(tiny_model, merge=None, adapters=adapters)) as running:
        ids = ["tuned", "second-adapter", "demo-model"]
        assert models(running) == ids
        async with httpx.AsyncClient() as client:
            for prompt, (base_reply, adapter_reply) in DEMO_REPLIES.items():
                assert await chat(client, running, "tuned", prompt) == adapter_reply
                assert await chat(client, running, "demo-model", prompt) == base_reply
        alone, together = await alone_then_together(running, ids)
    assert together == alone
    assert {p: alone["second-adapter", p] for p in PROMPTS} == own
    for p in PROMPTS:  # random weights: unlike the base everywhere
        assert alone["second-adapter", p] != alone["demo-model", p], p
    for p in TAUGHT:
        assert len({alone[m, p] for m in ids}) == 3, f"two models answered {p!r} alike"


# --------------------------------------------------------------------------- settings
def test_adapter_forms_from_flags_and_environment(monkeypatch, tmp_path):
    for name in ("AITK_ADAPTERS", "AITK_ADAPTER_PATH", "AITK_ADAPTER_NAME"):
        monkeypatch.delenv(name, raising=False)
    odd = tmp_path / "with, comma and = sign"
    # A single PATH in the old variable keeps working, commas and "=" in it included.
    monkeypatch.setenv("AITK_ADAPTER_PATH", str(odd))
    assert ServerSettings().adapter_ids == [("with, comma and = sign", odd)]
    monkeypatch.setenv("AITK_ADAPTER_PATH", f"a={odd},b.v2=/x/y")
    assert ServerSettings().adapter_ids == [("a", odd), ("b.v2", Path("/x/y"))]
    monkeypatch.setenv("AITK_ADAPTERS", " c=/c ")  # the newer name wins over the older
    assert ServerSettings().adapter_ids == [("c", Path("/c"))]
    # Flags (a list: one adapter per --adapter) win over the environment.
    settings = ServerSettings(adapters=["n=/p", "/q/r", "./s=t"])
    assert settings.adapters == [AdapterSpec("n", Path("/p")), AdapterSpec(None, Path("/q/r")),
                                 AdapterSpec(None, Path("s=t"))]
    assert settings.adapter_ids == [("n", Path("/p")), ("r", Path("/q/r")), ("s=t", Path("s=t"))]
    assert ServerSettings(adapter_path=Path("/one/lora"), adapter_name="mine").adapter_ids == [("mine", Path("/one/lora"))]
    with pytest.raises(ValueError, match="has no path"):
        ServerSettings(adapters=["x="])
    with pytest.raises(ValueError, match="empty"):
        ServerSettings(adapters=[" "])


@pytest.mark.parametrize("overrides, message", [
    (dict(adapters=["{a}", "{b}"], merge=True), "--merge works with a single adapter"),
    (dict(serve_base=True, merge=True), "--merge works with a single adapter"),
    (dict(adapters=["{a}", "{b}"], adapter_name="x"), "name each as --adapter NAME=PATH"),
    (dict(adapters=["x={a}", "x={b}"]), "both be called `x`"),
    (dict(adapters=["demo-model={a}"], serve_base=True), "both be called `demo-model`"),
    (dict(adapters=["{a}", "gone={a}/missing"]), "`gone`) has no adapter_config.json"),
])
def test_contradicting_adapter_settings_stop_start_up(tiny_model, second_adapter, overrides, message):
    fill = {"a": tiny_model.adapter_dir, "b": second_adapter}
    if "adapters" in overrides:
        overrides = {**overrides, "adapters": [v.format(**fill) for v in overrides["adapters"]]}
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_paths(make_settings(tiny_model, **overrides))


def test_a_merged_single_adapter_may_share_the_base_folder_name(tiny_model):
    # Merged, the base is not served, so an adapter named like it collides with nothing.
    settings = make_settings(tiny_model, adapters=[f"demo-model={tiny_model.adapter_dir}"], merge=None)
    assert check_paths(settings) is None
    with serve(settings) as running:
        models = httpx.get(running.base_url + "/v1/models", headers=running.headers(), timeout=30).json()["data"]
        assert [m["id"] for m in models] == ["demo-model"]
        reply = httpx.post(running.base_url + "/v1/chat/completions", headers=running.headers(), timeout=60,
                           json={"model": "demo-model", "messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 2})
        assert reply.status_code == 200 and reply.json()["model"] == "demo-model"


def test_cli_takes_repeated_adapters_and_reports_conflicts(tiny_model, second_adapter, capsys, monkeypatch):
    monkeypatch.setenv("INFERENCE_API_KEY", "k")
    code = main(["--model", str(tiny_model.model_dir), "--adapter", f"x={tiny_model.adapter_dir}",
                 "--adapter", f"x={second_adapter}"])
    assert code == EXIT_CONFIG
    assert "two served models would both be called `x`" in capsys.readouterr().err


def test_a_broken_second_adapter_stops_the_load_naming_it(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_bytes((tiny_model.adapter_dir / "adapter_config.json").read_bytes())
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LoadError, match="could not load the adapter `bad` from"):
        load_model(make_settings(tiny_model, adapters=[f"good={tiny_model.adapter_dir}", f"bad={broken}"]))
