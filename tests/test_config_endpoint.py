"""ACA_APP_ENDPOINT is a web address or nothing: control characters (they reached the
terminal raw through ``aitk snippet``: OSC 52 wrote the clipboard, OSC 0 the title) and
schemes a browser would hand to another program (``file:``, ``vscode:``) are refused when
the file is read, with the file left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aitk_tui.config.inference_config import ConfigFileError, InferenceConfig

BASE = {"SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000", "RESOURCE_GROUP_NAME": "rg",
        "STORAGE_ACCOUNT_NAME": "st1", "FILE_SHARE_NAME": "share", "ACA_APP_NAME": "app"}
REFUSED = ["app.example.com\x1b]52;c;cHduZWQ=\x07", "app.example.com\x1b]0;owned\x07", "app\r\nexample.com",
           "file:///etc/passwd", "vscode://extension/x", "javascript:alert(1)", "http://app.example.com",
           "https://user:pw@app.example.com", "app example.com", "ftp://app.example.com", "https://"]
ACCEPTED = {"app.westus3.azurecontainerapps.io": "https://app.westus3.azurecontainerapps.io",
            "https://app.example.com/": "https://app.example.com",
            "http://127.0.0.1:8443": "http://127.0.0.1:8443", "http://localhost:9000": "http://localhost:9000",
            "https://[::1]:5000": "https://[::1]:5000"}


def write(tmp_path, endpoint: str):
    path = tmp_path / "inference.config.json"
    path.write_text(json.dumps({**BASE, "ACA_APP_ENDPOINT": endpoint}))
    return path


@pytest.mark.parametrize("endpoint", REFUSED)
def test_an_endpoint_that_is_not_a_web_address_is_refused_and_the_file_kept(tmp_path, endpoint):
    path = write(tmp_path, endpoint)
    before = path.read_bytes()
    with pytest.raises(ConfigFileError) as e:
        InferenceConfig.load(path)
    assert "ACA_APP_ENDPOINT" in e.value.message and "left unchanged" in e.value.message
    assert "\x1b" not in e.value.message + (e.value.detail or "") or "\x1b" in repr(endpoint)
    assert path.read_bytes() == before


@pytest.mark.parametrize("endpoint,url", ACCEPTED.items())
def test_host_names_https_and_loopback_http_are_accepted(tmp_path, endpoint, url):
    assert InferenceConfig.load(write(tmp_path, endpoint)).endpoint_url == url


def test_snippet_prints_no_escape_sequence_from_the_config(tmp_path):
    project = tmp_path / "proj"
    (project / "infra").mkdir(parents=True)
    write(project / "infra", "app.example.com\x1b]52;c;cHduZWQ=\x07")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    out = subprocess.run([sys.executable, "-m", "aitk_tui", "snippet", "curl", "--project", str(project)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "\x1b" not in out.stdout + out.stderr
    assert "ACA_APP_ENDPOINT" in out.stderr
