"""JSON request bodies, parsed the one way every route uses: whatever the bytes are, a 4xx, never a 500.

``json.loads`` alone lets three kinds of input through to code that fails on them later: nesting deep
enough to exhaust the interpreter's recursion limit (a RecursionError, not a ValueError), nesting that
parses but makes every later walk over it deep, and ``\\ud800``-style escapes that decode to a lone
surrogate, which no UTF-8 encoder (S3 records, logs, the upstream request) accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from gateway.errors import ApiError

# Far above any real request (an OpenAI tool schema nests perhaps 10 deep), far below the recursion limit.
MAX_JSON_DEPTH = 64


class BadJson(ValueError):
    """The body is not acceptable JSON; the message says why, in the client's terms."""


def _check(value: Any) -> None:
    """Depth and lone surrogates, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadJson(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadJson("The JSON body contains a lone surrogate escape (\\ud800-\\udfff).") from exc


def parse_json(raw: bytes) -> Any:
    """The parsed body; BadJson for malformed JSON, an encoding other than UTF-8/16/32, nesting deeper
    than MAX_JSON_DEPTH or a lone surrogate."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise BadJson(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadJson("We could not parse the JSON body of your request.") from exc
    _check(value)
    return value


class CheckedJsonRequest(Request):
    """A request whose ``json()`` is ``parse_json``: a bad body is a 422 naming ``body``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except BadJson as exc:
                raise ApiError(422, f"body: {exc}", code="validation_error", param="body",
                               extra={"fields": {"body": str(exc)}}) from exc
        return self._json


class CheckedJsonRoute(APIRoute):
    """The route class of every router that takes a JSON body through FastAPI (audience, admin)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(CheckedJsonRequest(request.scope, request.receive))

        return checked
