"""Shared set-up for the back-end tests: the CLI pointed at the in-process local cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitk_tui.cloud.session import CloudSession
from aitk_tui.project import Project


@pytest.fixture
def issued_tokens(monkeypatch) -> list[str]:
    """Every local-cloud access token issued during the test (to prove none leaks)."""
    from aitk_tui.local import credential

    tokens: list[str] = []
    real = credential.issue_token

    def recording(*a, **kw):
        token, expires = real(*a, **kw)
        tokens.append(token)
        return token, expires

    monkeypatch.setattr(credential, "issue_token", recording)
    return tokens


@pytest.fixture
def cli_cloud(local_cloud, local_project, monkeypatch):
    """``aitk --local`` in-process uses the test's local cloud instead of spawning a daemon."""
    from aitk_tui.local import daemon

    def ensure_running(state_dir, *, model_path=None, adapter_path=None, **kw):
        return daemon.LocalCloudInfo(url=local_cloud.url, ca_bundle=local_cloud.ca_bundle, pid=0,
                                     endpoints=local_cloud.endpoints, state_dir=local_cloud.state_dir)

    monkeypatch.setattr(daemon, "ensure_running", ensure_running)
    monkeypatch.delenv("AITK_API_KEY", raising=False)
    return local_cloud


@pytest.fixture
def session(local_cloud, local_project) -> CloudSession:
    return CloudSession.for_cloud(Project(Path(local_project)), local_cloud.endpoints, local_cloud.credential())
