"""OpenAI-compatible routes proxied to the vLLM Service.

The request body is checked field by field on the parsed JSON (no full pydantic model: this is the hot
path) and forwarded byte for byte unless ``max_tokens`` had to be clamped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ApiError, send_error
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
        payload = json.loads(raw)
    except ValueError as exc:
        raise _invalid("We could not parse the JSON body of your request.", code="invalid_json") from exc
    if not isinstance(payload, dict):
        raise _invalid("The request body must be a JSON object.", code="invalid_json")
    return payload


def _text_length(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


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


def check_messages(payload: dict[str, Any], settings: Settings) -> None:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty array.", param="messages",
                       code="missing_required_parameter" if messages is None else "invalid_type")
    if len(messages) > settings.max_messages:
        raise _invalid(f"Too many messages: {len(messages)} > {settings.max_messages}.", param="messages",
                       code="too_many_messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid("Each message must be an object.", param=f"messages[{index}]", code="invalid_type")
        if _text_length(message.get("content")) > settings.max_message_chars:
            raise _invalid(f"Message {index} is longer than {settings.max_message_chars} characters.",
                           param=f"messages[{index}].content", code="message_too_long")


def check_prompt(payload: dict[str, Any], settings: Settings) -> None:
    prompt = payload.get("prompt")
    if prompt is None:
        raise _invalid("you must provide a prompt parameter", param="prompt",
                       code="missing_required_parameter")
    prompts = prompt if isinstance(prompt, list) else [prompt]
    if len(prompts) > settings.max_messages:
        raise _invalid(f"Too many prompts: {len(prompts)} > {settings.max_messages}.", param="prompt",
                       code="too_many_messages")
    for item in prompts:
        size = len(item) if isinstance(item, str | list) else 0
        if size > settings.max_message_chars:
            raise _invalid(f"The prompt is longer than {settings.max_message_chars} characters.",
                           param="prompt", code="message_too_long")


def limit_max_tokens(payload: dict[str, Any], settings: Settings) -> bool:
    """Apply the max_tokens policy; True when the payload was changed.

    clamp: values above the limit are lowered to it, and a request without one gets the limit.
    reject: values above the limit are a 400.
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
        payload["max_tokens"] = settings.max_tokens
        changed = True
    return changed


async def _proxy(request: Request, path: str, kind: str) -> Response:
    services = services_of(request)
    settings = services.settings
    request.app.state.services.rate_limiter.check(request.scope)
    raw_payload = await read_json_object(request)
    check_model(raw_payload, settings)
    stream = check_stream(raw_payload)
    if kind == "chat":
        check_messages(raw_payload, settings)
    else:
        check_prompt(raw_payload, settings)
    if settings.log_prompts:
        log.info("prompt", extra={"request_id": request.scope["state"]["request_id"],
                                  "messages": raw_payload.get("messages"),
                                  "prompt": raw_payload.get("prompt")})
    if limit_max_tokens(raw_payload, settings):
        body = json.dumps(raw_payload).encode()
    else:
        body = await request.body()  # cached by Starlette: the bytes as received
    return RelayResponse(services, path, body, stream, request.scope["route"].path)


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
        data = json.loads(body)
    except ValueError as exc:
        raise ApiError(502, "The model server's model list is not JSON.", code="upstream_error") from exc
    data["data"] = [model for model in data.get("data", []) if model.get("id") in allowed]
    return JSONResponse(data)
