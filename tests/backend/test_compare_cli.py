"""``aitk chat --compare A,B MESSAGE`` against the real server serving two adapters and the base."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aitk_tui.cli import main
from inference_server.demo_model import DEMO_REPLIES
from tests.fixtures_model import TEST_KEY, RunningServer, TinyModel, make_settings, serve


@pytest.fixture(scope="module")
def three_models(tiny_model: TinyModel, second_adapter: Path) -> Iterator[RunningServer]:
    settings = make_settings(tiny_model, merge=None, adapters=[tiny_model.adapter_dir, second_adapter])
    with serve(settings) as running:
        yield running


def _chat(capsys, tmp_path, server, *argv: str) -> tuple[int, str, str]:
    rc = main(["--project", str(tmp_path), "chat", "--endpoint", server.base_url, "--insecure-http",
               "--temperature", "0", "--max-tokens", "30", *argv])  # the random adapter may never stop
    out, err = capsys.readouterr()
    return rc, out, err


def test_compare_prints_both_answers_labelled(capsys, tmp_path, three_models, monkeypatch):
    monkeypatch.setenv("AITK_API_KEY", TEST_KEY)
    base_reply, adapter_reply = DEMO_REPLIES["hello"]
    rc, out, err = _chat(capsys, tmp_path, three_models, "--compare", "demo-adapter,demo-model", "hello")
    assert rc == 0, err
    assert out == f"== demo-adapter ==\n{adapter_reply}\n\n== demo-model ==\n{base_reply}\n"
    assert err.count("first token") == 2  # each answer's own timing, on stderr
    # Order is the user's; spaces around the names are forgiven.
    rc, out, _ = _chat(capsys, tmp_path, three_models, "--compare", " demo-model , second-adapter", "hello")
    assert rc == 0 and out.startswith(f"== demo-model ==\n{base_reply}\n\n== second-adapter ==\n")
    assert out.split("== second-adapter ==\n")[1].strip() not in ("", base_reply, adapter_reply)


def test_an_unknown_model_fails_alone(capsys, tmp_path, three_models, monkeypatch):
    monkeypatch.setenv("AITK_API_KEY", TEST_KEY)
    rc, out, err = _chat(capsys, tmp_path, three_models, "--compare", "nope,demo-model", "hello")
    assert rc == 1
    assert out == f"== nope ==\n\n== demo-model ==\n{DEMO_REPLIES['hello'][0]}\n"
    assert "nope" in err and "demo-adapter" in err and "Traceback" not in err  # the refusal lists what is served


@pytest.mark.parametrize("argv, message", [
    (["--compare", "a"], "two different model names"),
    (["--compare", "a,a"], "two different model names"),
    (["--compare", "a,b,c"], "two different model names"),
    (["--compare", ","], "two different model names"),
    (["--compare", "a,b", "--chat-model", "a"], "contradict"),
])
def test_compare_usage_errors_come_before_any_request(capsys, tmp_path, argv, message):
    rc = main(["--project", str(tmp_path), "chat", "--endpoint", "https://unreachable.invalid", *argv, "hi"])
    _, err = capsys.readouterr()
    assert rc == 2 and message in err and err.startswith("aitk: error:")
