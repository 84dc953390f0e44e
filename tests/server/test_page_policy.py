"""The chat page's headers, fast (no model, no browser): its routes on a bare FastAPI app.
The browser test (test_web_page.py) needs a served model and Chromium; a policy loosened to
``connect-src *`` (the page could send the key and the conversation anywhere) was caught by
one test there alone."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from inference_server.page import PATHS, add_page_routes


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    add_page_routes(app)
    return TestClient(app)


@pytest.mark.parametrize("path", PATHS)
def test_every_directive_keeps_the_page_to_its_own_origin(client, path):
    response = client.get(path)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert directives == {"default-src": ["'none'"], "script-src": ["'self'"], "style-src": ["'self'"],
                          "connect-src": ["'self'"], "img-src": ["'none'"], "base-uri": ["'none'"],
                          "form-action": ["'none'"], "frame-ancestors": ["'none'"]}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY" and response.headers["referrer-policy"] == "no-referrer"
    assert "http://" not in response.text and "https://" not in response.text  # nothing loaded from elsewhere


def test_only_the_three_files_are_served(client):
    for path in ("/static/../page.py", "/static/page.py", "/static/", "/index.html"):
        assert client.get(path).status_code == 404, path
