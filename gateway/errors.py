"""OpenAI-style errors: every error the gateway answers has the body
``{"error": {"message", "type", "param", "code"}}`` and the matching HTTP status."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

# status -> the error "type" OpenAI's API uses for it
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


class ApiError(StarletteHTTPException):
    """An error answered with the OpenAI error body.

    Subclasses Starlette's HTTPException so FastAPI re-raises it from body reading unchanged.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(status_code=status, detail=message, headers=headers)
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status_code, self.message, code=self.code, param=self.param, **self.extra)


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None,
               **extra: Any) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "server_error")
    error = {"message": message, "type": kind, "param": param, "code": code}
    error.update(extra)
    return {"error": error}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def send_error(send: Send, error: ApiError,
                     extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an error straight over ASGI (used by responses that manage the ASGI exchange themselves)."""
    payload = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    for name, value in (error.headers or {}).items():
        headers.append((name.lower().encode(), value.encode()))
    headers.extend(extra_headers or [])
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def sse_error_event(error: ApiError) -> bytes:
    """An error after the stream started: one SSE event, as vLLM sends it, then ``[DONE]``."""
    return b"data: " + json.dumps(error.body()).encode() + b"\n\n" + b"data: [DONE]\n\n"


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) or "body"


async def _api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(ApiError(exc.status_code, message, code=code))


async def _validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """422 with one message per field, in ``error.fields`` (the web UI shows them beside the inputs)."""
    assert isinstance(exc, RequestValidationError)
    fields: dict[str, str] = {}
    for item in exc.errors():
        name = _field_name(tuple(item.get("loc", ())))
        message = "invalid JSON" if item.get("type") == "json_invalid" else str(item.get("msg", "invalid"))
        fields.setdefault(name, message)
    first = next(iter(fields), None)
    summary = "; ".join(f"{name}: {message}" for name, message in fields.items())
    return error_response(
        ApiError(422, summary, code="validation_error", param=first, extra={"fields": fields}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
