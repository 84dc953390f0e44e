"""``aitk key`` against the local cloud, and ``aitk snippet``: each snippet is run as
printed (curl in bash, the Python one with the openai package) against the real server
with the tiny model; the JavaScript one is checked by node's parser (no npm here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aitk_tui.cli import main
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_model import TEST_KEY

PROMPT = "Hello! What can you do?"  # the snippets' prompt (aitk_tui.snippets.PROMPT)


def _aitk(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--project", str(root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _snippet(capsys, tmp_path, server, language: str, *extra: str) -> str:
    rc, out, err = _aitk(capsys, tmp_path, "snippet", language, "--endpoint", server.base_url, "--insecure-http",
                         *extra)
    assert rc == 0, err
    assert TEST_KEY not in out + err  # the key is read from the environment, never written in
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITK_")}
    return {**env, **extra}


@pytest.fixture
def key_in_env(monkeypatch):
    monkeypatch.setenv("AITK_API_KEY", TEST_KEY)


def test_the_curl_snippet_works_as_printed(capsys, tmp_path, tiny_server, key_in_env):
    text = _snippet(capsys, tmp_path, tiny_server, "curl")
    assert text.startswith(f'# export AITK_API_KEY="$(aitk --project {tmp_path} key)"\ncurl ')
    assert "demo-adapter" in text  # the server's default model, asked for
    run = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=60,
                         env=_env(AITK_API_KEY=TEST_KEY), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    reply = json.loads(run.stdout)
    assert reply["model"] == "demo-adapter"
    assert reply["choices"][0]["message"]["content"].strip() and reply["choices"][0]["finish_reason"] == "stop"
    # Without the key in the environment the server refuses it, and curl fails.
    refused = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=60, env=_env(),
                             cwd=tmp_path)
    assert refused.returncode != 0 and "invalid_api_key" in refused.stdout


def test_the_python_snippet_works_as_printed(capsys, tmp_path, tiny_server, key_in_env):
    text = _snippet(capsys, tmp_path, tiny_server, "python", "--chat-model", "demo-model")
    script = tmp_path / "chat.py"
    script.write_text(text)
    before = tiny_server.app.state.metrics.generated_tokens
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env=_env(AITK_API_KEY=TEST_KEY), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # The demo model samples (temperature 1): its answer reads as sentences, streamed whole.
    assert len(run.stdout.strip()) > 20 and run.stdout.endswith(".\n"), run.stdout
    assert tiny_server.app.state.metrics.generated_tokens > before  # this server answered it


def test_the_js_snippet_parses(capsys, tmp_path, tiny_server, key_in_env):
    text = _snippet(capsys, tmp_path, tiny_server, "js")
    assert "process.env.AITK_API_KEY" in text and f'baseURL: "{tiny_server.base_url}/v1"' in text
    if shutil.which("node") is None:
        pytest.fail("node is needed to check the JavaScript snippet's syntax")
    script = tmp_path / "chat.mjs"
    script.write_text(text)
    check = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_a_hostile_model_name_stays_data_in_every_snippet(capsys, tmp_path, tiny_server, key_in_env):
    name = "x'\"; touch pwned; echo `id` $(id) \\n\u2028"
    text = _snippet(capsys, tmp_path, tiny_server, "curl", "--chat-model", name)
    run = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=60,
                         env=_env(AITK_API_KEY=TEST_KEY), cwd=tmp_path)
    assert not (tmp_path / "pwned").exists()
    assert run.returncode != 0 and json.loads(run.stdout)["error"]["code"] == "model_not_found"
    for language, runner in (("python", [sys.executable, "-c"]), ("js", ["node", "--input-type=module", "-e"])):
        text = _snippet(capsys, tmp_path, tiny_server, language, "--chat-model", name)
        # The model literal evaluates back to the name itself.
        line = next(l for l in text.splitlines() if l.strip().startswith("model"))
        literal = line.split(":", 1)[1] if language == "js" else line.split("=", 1)[1]
        literal = literal.strip().rstrip(",")
        shown = subprocess.run([*runner, f"import sys; sys.stdout.write({literal})" if language == "python"
                                else f"process.stdout.write({literal})"], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
        assert shown.stdout == name, (language, shown.stderr)
    assert not (tmp_path / "pwned").exists()


def test_snippet_usage_errors(capsys, tmp_path):
    rc, _, err = _aitk(capsys, tmp_path, "snippet", "ruby", "--endpoint", "https://x.example", "--chat-model", "m")
    assert rc == 2 and "invalid choice: 'ruby'" in err
    rc, _, err = _aitk(capsys, tmp_path, "snippet", "--endpoint", "not a url", "--chat-model", "m")
    assert rc == 2 and err.startswith("aitk: error: not an endpoint URL") and "Traceback" not in err
    rc, _, err = _aitk(capsys, tmp_path, "snippet", "curl", "--chat-model", "m")  # no config, no --endpoint
    assert rc == 2 and "inference.config.json does not exist" in err


def _provision(capsys, root: Path) -> dict:
    assert _aitk(capsys, root, "groups", "create", "rg-demo", "--location", "eastus", "--local")[0] == 0
    rc, _, err = _aitk(capsys, root, "provision", "--local", "--yes", "--subscription", SUB,
                       "--resource-group", "rg-demo")
    assert rc == 0, err
    return json.loads((root / "infra/inference.config.json").read_text())


def test_key_prints_the_apps_secret_only_off_a_terminal(cli_cloud, local_project, local_factory, capsys,
                                                        monkeypatch):
    root = Path(local_project)
    config = _provision(capsys, root)
    secrets = local_factory.container_apps(SUB).container_apps.list_secrets("rg-demo", config["ACA_APP_NAME"])
    secret = next(s["value"] for s in secrets["value"] if s["name"] == "inference-api-key")

    rc, out, err = _aitk(capsys, root, "key", "--local")  # stdout is captured: not a terminal
    assert rc == 0, err
    assert out == secret + "\n" and secret not in err

    with monkeypatch.context() as patch:
        patch.setattr(sys.stdout, "isatty", lambda: True)
        rc, out, err = _aitk(capsys, root, "key", "--local")
        assert rc == 2 and secret not in out + err
        assert "not printed to a terminal" in err and "--show" in err
        rc, out, _ = _aitk(capsys, root, "key", "--local", "--show")
        assert rc == 0 and out == secret + "\n"

    # The local cloud's snippet trusts its CA and sets the key with the same flags.
    rc, out, err = _aitk(capsys, root, "snippet", "curl", "--local", "--chat-model", "demo-adapter")
    assert rc == 0, err
    assert f'export AITK_API_KEY="$(aitk --local --project {root} key)"' in out
    assert f"--cacert {cli_cloud.ca_bundle}" in out and secret not in out + err
    assert f"https://{config['ACA_APP_ENDPOINT']}/v1/chat/completions" in out


def test_key_without_a_provisioned_app_is_one_clear_error(capsys, tmp_path):
    rc, out, err = _aitk(capsys, tmp_path, "key")
    assert rc == 2 and out == ""
    assert err.startswith("aitk: error:") and "Traceback" not in err
