"""The chat page at ``/``: one static page shipped in ``static/`` (no build step).

The page and its two files are served without the key (a browser must load them before
the user can type it); every API call the page makes sends the key, and ``Gate`` checks
it. The files are read once at start-up: three small fixed routes, no directory serving,
so no path a client sends can reach any other file.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

STATIC = Path(__file__).with_name("static")
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/static/app.css": ("app.css", "text/css; charset=utf-8")}
PATHS = tuple(FILES)

# Only this origin's own script, style and API: no inline script, no eval, nothing from
# elsewhere, no images (model output never becomes markup), no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def add_page_routes(app: FastAPI) -> None:
    for path, (name, media_type) in FILES.items():
        body = (STATIC / name).read_bytes()

        def serve(body: bytes = body, media_type: str = media_type) -> Response:
            return Response(body, media_type=media_type, headers=HEADERS)

        app.add_api_route(path, serve, methods=["GET"], include_in_schema=False)
