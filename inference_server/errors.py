"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every failure a client can see leaves through here: an :class:`APIError` raised by a route
or answered by the gate, and the handlers :func:`add_error_handlers` installs for what
FastAPI and Starlette raise themselves (a body that fails validation, an unknown path, a
method not allowed, a body over the limit, and anything unexpected, which is logged and
answered as a bare 500 so that no exception text reaches the client).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import schemas

log = logging.getLogger("inference_server")


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return schemas.error_body(self.message, self.type, self.code, self.param)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class BodyTooLarge(Exception):
    """Raised by the gate's ``receive`` once a body without a declared length runs over."""


def body_too_large(limit: int) -> APIError:
    return APIError(413, f"request body exceeds {limit} bytes", code="request_too_large")


_UNION_MEMBER = re.compile(r"str|int|float|bool|none|\w+\[.*\]|function-\w+\[.*\]")


def validation_error(errors: list[Any]) -> APIError:
    """pydantic's first error, as the 400 an OpenAI client expects (``param``: the field)."""
    first = errors[0] if errors else {}
    # pydantic names the member of a union it tried ("str", "list[str]"); the client's
    # param is the field itself.
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_MEMBER.fullmatch(str(p))]
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        message, loc = "the request body is not valid JSON", []
    where = ".".join(loc)
    return APIError(400, f"{where}: {message}" if where else message, param=where or None)


def add_error_handlers(app: FastAPI, *, max_body_bytes: int) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return body_too_large(max_body_bytes).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error")
        return APIError(500, "internal server error", "server_error").response()
