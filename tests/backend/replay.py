"""Replaying Azure's documented and reported answers through the real SDK clients.

Only the azure-core transport is replaced: the SDK's pipeline (retries and Retry-After,
pollers, error parsing, deserialisation) runs as it does against Azure. A test lists the
exchanges it expects as ``Reply`` rules (method, a regular expression on the URL, then the
answers in order; the last answer repeats), builds a session whose client factory uses the
:class:`ReplayTransport`, and checks what the back-end tells the user.

    transport = ReplayTransport([Reply("PUT", r"/deployments/aitk-inference-replay\\?", [(400, error_body)])])
    session = replay_session(project, transport)

Bodies are Microsoft's examples (azure-rest-api-specs) and shapes public reports show
Azure answering; each test says where its shape comes from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from aitk_tui.cloud.clients import ClientFactory
from aitk_tui.cloud.session import CloudSession
from aitk_tui.config.state import ProjectState
from aitk_tui.endpoints import CloudEndpoints
from aitk_tui.project import Project

ARM = "https://management.replay.invalid"
SUB = "00000000-0000-0000-0000-00000000feed"


@dataclass
class Reply:
    method: str
    url: str  # a regular expression searched in the full URL
    answers: list[tuple[int, Any] | tuple[int, Any, dict[str, str]]]
    hits: int = 0

    def matches(self, method: str, url: str) -> bool:
        return method.upper() == self.method.upper() and re.search(self.url, url) is not None

    def next(self) -> tuple[int, Any, dict[str, str]]:
        answer = self.answers[min(self.hits, len(self.answers) - 1)]
        self.hits += 1
        status, body, *rest = answer
        return status, body, (rest[0] if rest else {})


@dataclass
class ReplayTransport(HttpTransport):
    """An azure-core transport that answers from ``rules``; an unexpected request fails loudly."""

    rules: list[Reply]
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __enter__(self) -> "ReplayTransport":
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append((request.method, request.url))
        rule = next((r for r in self.rules if r.matches(request.method, request.url)), None)
        if rule is None:
            raise AssertionError(f"replay: no answer for {request.method} {request.url}")
        status, body, headers = rule.next()
        raw = requests.Response()
        raw.status_code = status
        raw._content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        raw._content_consumed = True  # the whole body is here: nothing to read from a socket
        raw.headers.update({"Content-Type": "application/json", "x-ms-request-id": "replay", **headers})
        raw.url = request.url
        raw.reason = "replayed"
        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        response.read()
        return response

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, u in self.requests if m.upper() == method.upper() and re.search(pattern, u))


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("replay-token", 4_102_444_800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("replay-token", 4_102_444_800)


class ReplayFactory(ClientFactory):
    def __init__(self, transport: ReplayTransport) -> None:
        super().__init__(CloudEndpoints(name="replay", arm_url=ARM, files_account_url=ARM + "/{account}",
                                        ca_bundle=None, polling_interval=0, retry_backoff_factor=0.01),
                         _Credential())
        self.transport = transport

    def _mgmt_kwargs(self) -> dict[str, Any]:
        return {**super()._mgmt_kwargs(), "transport": self.transport}


REPLAY_DEPLOYMENT = "aitk-inference-replay"


def replay_session(project_dir: Path | str, transport: ReplayTransport) -> CloudSession:
    """A session over ``project_dir`` whose every SDK client talks to ``transport``."""
    project = Project(Path(project_dir))
    # A known project id: its deployment is ``aitk-inference-replay`` (REPLAY_DEPLOYMENT).
    ProjectState.update(project.state_path, project_id="replay")
    session = CloudSession(project, ReplayFactory(transport).endpoints, _Credential())
    session.factory = ReplayFactory(transport)
    session.poll_interval_s = 0.01
    return session


def arm_error(code: str, message: str, details: list[dict] | None = None, **extra: Any) -> dict:
    err: dict[str, Any] = {"code": code, "message": message, **extra}
    if details:
        err["details"] = details
    return err
