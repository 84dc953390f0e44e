"""A config the local cloud wrote is told apart from an Azure deployment's (by its loopback
endpoint; the file keeps exactly AI Toolkit's six keys), in the CLI as in the TUI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from aitk_tui.config.inference_config import KEYS, InferenceConfig


@pytest.mark.parametrize("endpoint, local", [
    ("127.0.0.1:49321", True), ("https://127.0.0.1:8443/", True), ("127.1.2.3", True),
    ("localhost:9000", True), ("LOCALHOST", True), ("https://[::1]:8443", True),
    ("aiacaapp.westus3.azurecontainerapps.io", False), ("127.0.0.1.nip.io", False),
    ("https://evil-127.0.0.1.example.com", False), ("", False), ("  ", False), (None, False),
    ("x" * 10_000, False),
])
def test_the_local_cloud_is_told_by_a_loopback_endpoint(endpoint, local):
    assert InferenceConfig(ACA_APP_ENDPOINT=endpoint).from_local_cloud is local


def test_a_broken_endpoint_is_not_taken_for_anything():
    with pytest.raises(ValidationError):
        InferenceConfig(ACA_APP_ENDPOINT="http://[::1")


def test_status_without_local_refuses_the_local_clouds_config_in_one_sentence(tmp_path):
    root = tmp_path / "p"
    (root / "infra" / "provision").mkdir(parents=True)
    config = {**dict.fromkeys(KEYS, "x1"), "SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
              "ACA_APP_NAME": "app-x", "ACA_APP_ENDPOINT": "127.0.0.1:49321"}
    (root / "infra" / "inference.config.json").write_text(json.dumps(config))
    before = (root / "infra" / "inference.config.json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "aitk_tui", "status"], cwd=root, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert "local cloud" in r.stderr and "--local" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert (root / "infra" / "inference.config.json").read_bytes() == before
