"""OpenAI-compatible routes proxied to the vLLM Service.

The request body is checked field by field on the parsed JSON (gateway/openai_fields.py; no full pydantic
model: this is the hot path) and forwarded byte for byte unless ``max_tokens`` had to be set or clamped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.bodies import BadJson, parse_json
from gateway.errors import ApiError, send_error
from gateway.limits import RateLimiter, work_tokens
from gateway.model_info import public_models
from gateway.openai_fields import Shape, check_request
from gateway.relay import RelayResponse, RelayServices
from gateway.settings import Settings
from gateway.upstream import upstream_http_error

router = APIRouter()
log = logging.getLogger("gateway.prompts")

TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
MODELS_MAX_BYTES = 1024 * 1024


def services_of(request: Request) -> RelayServices:
    return request.app.state.services.relay


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


async def read_json_object(request: Request) -> dict[str, Any]:
    try:
        raw = await request.body()
    except ClientDisconnect as exc:
        raise _invalid("The client disconnected while sending the body.") from exc
    try:
        payload = parse_json(raw)
    except BadJson as exc:
        raise _invalid(str(exc), code="invalid_json") from exc
    if not isinstance(payload, dict):
        raise _invalid("The request body must be a JSON object.", code="invalid_json")
    return payload


def check_model(payload: dict[str, Any], settings: Settings) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("you must provide a model parameter", param="model", code="missing_required_parameter")
    if model not in settings.model_allow_list:
        raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                       code="model_not_found", param="model")
    return model


def check_stream(payload: dict[str, Any]) -> bool:
    stream = payload.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise _invalid("'stream' must be a boolean.", param="stream", code="invalid_type")
    return stream


def default_max_tokens(settings: Settings, context: int, shape: Shape) -> int:
    """The max_tokens given to a request without one: the setting, lowered so that an upper bound of the
    prompt plus it fits the model's context (vLLM answers 400 otherwise)."""
    return max(1, min(settings.max_tokens, context - shape.longest_prompt_tokens))


def limit_max_tokens(payload: dict[str, Any], settings: Settings, default: int | None = None) -> bool:
    """Apply the max_tokens policy; True when the payload was changed.

    clamp: values above the limit are lowered to it.
    reject: values above the limit are a 400.
    Under both, a request without one gets ``default`` (the limit when not given).
    """
    changed = False
    present = False
    for field in TOKEN_FIELDS:
        value = payload.get(field)
        if value is None:
            continue
        present = True
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _invalid(f"'{field}' must be a positive integer.", param=field, code="invalid_value")
        if value > settings.max_tokens:
            if settings.max_tokens_policy == "reject":
                raise _invalid(f"'{field}' is {value}; this gateway allows at most {settings.max_tokens}.",
                               param=field, code="max_tokens_too_large")
            payload[field] = settings.max_tokens
            changed = True
    if not present:
        payload["max_tokens"] = settings.max_tokens if default is None else default
        changed = True
    return changed


def requested_tokens(payload: dict[str, Any]) -> int:
    """The completion length a checked request asks for (after ``limit_max_tokens``)."""
    values = [payload[field] for field in TOKEN_FIELDS if payload.get(field) is not None]
    return min(values) if values else 0


async def _proxy(request: Request, path: str, kind: str) -> Response:
    services = services_of(request)
    settings = services.settings
    app_services = request.app.state.services
    raw_payload = await read_json_object(request)
    check_model(raw_payload, settings)
    stream = check_stream(raw_payload)
    shape = check_request(raw_payload, kind, settings)
    if settings.log_prompts:
        log.info("prompt", extra={"request_id": request.scope["state"]["request_id"],
                                  "messages": raw_payload.get("messages"),
                                  "prompt": raw_payload.get("prompt")})
    default = None
    if all(raw_payload.get(field) is None for field in TOKEN_FIELDS):
        default = default_max_tokens(settings, await app_services.model_context.length(), shape)
    if limit_max_tokens(raw_payload, settings, default):
        body = json.dumps(raw_payload).encode()
    else:
        body = await request.body()  # cached by Starlette: the bytes as received
    relay = RelayResponse(services, path, body, stream, request.scope["route"].path)
    limiter: RateLimiter = app_services.rate_limiter
    if not limiter.buckets.enabled:
        return relay  # per-client limits off (GATEWAY_RATE_LIMIT_PER_SECOND=0): one load generator
    client = limiter.client(request.scope)
    limiter.slots.acquire(client)
    try:
        cost = work_tokens(0, shape.completions, requested_tokens(raw_payload)) + shape.prompt_tokens_estimate
        limiter.check(request.scope, cost)
    except ApiError:
        limiter.slots.release(client)
        raise
    return ClientHeld(relay, lambda: limiter.slots.release(client))


class ClientHeld(Response):
    """A response that gives its client's in-flight slot back when it ends, however it ends."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release
        self.background = None
        self.status_code = inner.status_code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


PROXIED = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _proxy(request, "/v1/chat/completions", "chat")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _proxy(request, "/v1/completions", "completions")


class ProxyDispatch:
    """Serves ``POST`` on the two completion routes straight from the middleware stack.

    The same handler as the FastAPI routes above (which stay registered: the OpenAPI document lists
    them), minus what these two routes never use: the router's path matching over every route, the
    dependency machinery and the exception middleware's wrapping of every ``send``. Every token of
    every stream passes through ``send``; on the gateway benchmark this path takes a tenth of the
    gateway's CPU away (bench/README.md). It sits inside GatewayMiddleware, so request ids, the access
    log, the body limit and the request counter are the same for both paths.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The routes' own objects: the access log and the request counter read their path template.
        self.routes: dict[str, BaseRoute] = {
            route.path: route for route in router.routes
            if isinstance(route, APIRoute) and route.path in PROXIED and "POST" in route.methods
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        try:
            response = await _proxy(Request(scope, receive), scope["path"], PROXIED[scope["path"]])
        except ApiError as error:
            await send_error(send, error)
            return
        await response(scope, receive, send)


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    services = services_of(request)
    allowed = services.settings.model_allow_list
    with anyio.move_on_after(services.settings.upstream_first_token_timeout) as timer:
        status, body = await services.upstream.read("GET", "/v1/models", MODELS_MAX_BYTES)
    if timer.cancelled_caught:
        raise ApiError(504, "The model server did not answer in time.", code="upstream_timeout")
    if status != 200:
        raise upstream_http_error(status, body)
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise ApiError(502, "The model server's model list is not JSON.", code="upstream_error") from exc
    request.app.state.services.model_context.remember(answer)
    return JSONResponse(public_models(answer, allowed))
