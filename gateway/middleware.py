"""The gateway's one middleware, pure ASGI (no BaseHTTPMiddleware: it would buffer streams and hide
``http.disconnect``): request id in and out, the body size limit, the request counter and a JSON access log
line per request (never per chunk).

It is the outermost layer the gateway owns, so it is also where a crash is answered: an exception that
reaches it becomes a 500 (when nothing was sent yet) and is counted and logged as 500. Starlette's own
server-error layer sits outside it, too late for the counter, which would have recorded 499 ("the
client left") and kept every 5xx alert blind to it."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, error_body, send_error
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")  # whole value: fullmatch


_CRASH = json.dumps(
    error_body(500, "The gateway failed to handle the request.", code="internal_error")).encode()


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        request_id = b""
        content_length = -1
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.fullmatch(value):
                request_id = value
            elif name == b"content-length" and value.isdigit():
                content_length = int(value)
        if not request_id:
            request_id = uuid.uuid4().hex.encode()
        scope.setdefault("state", {}).update(request_id=request_id.decode(), arrived=arrived)
        status = 0
        crashed = False
        id_header = (REQUEST_ID_HEADER, request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        limit = self.max_body_bytes
        try:
            if content_length > limit:
                await send_error(send_with_id, _too_large(limit))
                return
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _too_large(limit)
                return message

            await self.app(scope, receive_limited if content_length < 0 else receive, send_with_id)
        except ApiError as error:
            # Raised outside the app's handlers (the body limit inside a response that reads the body).
            if not status:
                await send_error(send_with_id, error)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id.decode(), "path": scope["path"]})
            if not status:
                await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(_CRASH)).encode())]})
                await send_with_id({"type": "http.response.body", "body": _CRASH, "more_body": False})
            crashed = True
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "other"
            method = scope["method"]
            if crashed:
                status = 500
            self.metrics.requests.labels(template, method, str(status or 499)).inc()
            log.info("request", extra={
                "request_id": request_id.decode(),
                "method": method,
                "path": scope["path"],
                "route": template,
                "status": status or 499,
                "duration_ms": round((time.perf_counter() - arrived) * 1000, 3),
            })
