"""Admin endpoints (``Authorization: Bearer <GATEWAY_ADMIN_TOKEN>``): mode, session, prize draw."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.bodies import CheckedJsonRoute
from gateway.errors import ApiError
from gateway.limits import TokenBuckets
from gateway.settings import SettingsDep
from gateway.storage import SESSION_ID, Conflict, draw_winners, now_iso, tickets_digest

log = logging.getLogger("gateway.admin")

DRAW_ALGORITHM = "random.Random(seed).sample(sorted(tickets), min(count, len(tickets))), Python 3"


def require_admin(request: Request, settings: SettingsDep) -> None:
    """The bearer token, compared in constant time; failed attempts limited per client.

    A token shorter than ADMIN_TOKEN_MIN_CHARS, or none, turns the endpoints off (503, and a warning at
    start-up), so that a Secret created empty never opens them to ``Authorization: Bearer`` alone.
    """
    reason = settings.admin_disabled_reason
    if reason is not None or settings.admin_token is None:
        raise ApiError(503, f"The admin API is disabled: {reason}.", code="admin_disabled")
    failures: TokenBuckets = request.app.state.admin_failures
    client = request.app.state.services.rate_limiter.client(request.scope)
    wait = failures.wait(client)
    if wait > 0:
        raise ApiError(429, "Too many failed admin attempts from this client; retry after the delay in "
                            "Retry-After.", code="rate_limit_exceeded", retry_after=max(1, math.ceil(wait)))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Digests of equal length: compare_digest's time then says nothing about the token's length either.
    given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
    expected = hashlib.sha256(settings.admin_token.get_secret_value().encode()).digest()
    if not (hmac.compare_digest(given, expected) and scheme.lower() == "bearer"):
        failures.take(client)
        log.warning("admin authentication failed", extra={"client": client, "path": request.url.path})
        error = ApiError(401, "A valid admin bearer token is required.", code="invalid_admin_token")
        error.headers = {"WWW-Authenticate": "Bearer"}
        raise error


router = APIRouter(prefix="/api/admin", dependencies=[Depends(require_admin)], route_class=CheckedJsonRoute)


class ModeIn(BaseModel):
    mode: Literal["quiz", "survey"]


class SessionIn(BaseModel):
    session_id: str | None = Field(default=None, pattern=SESSION_ID.pattern)


class DrawIn(BaseModel):
    count: int = Field(ge=1, le=1000)
    seed: str | int | None = None
    session_id: str | None = Field(default=None, pattern=SESSION_ID.pattern)


@router.post("/mode")
async def set_mode(body: ModeIn, request: Request) -> dict[str, Any]:
    state = await request.app.state.services.state.set_mode(body.mode)
    return asdict(state)


@router.post("/session", status_code=201)
async def new_session(request: Request, body: SessionIn | None = None) -> dict[str, Any]:
    state, previous = await request.app.state.services.state.new_session(body.session_id if body else None)
    return {**asdict(state), "previous_session_id": previous}


@router.post("/draw", status_code=201, response_model=None)
async def draw(body: DrawIn, request: Request) -> JSONResponse:
    """Winners drawn reproducibly from the session's survey tickets and stored in S3.

    The seed is used as a string (an integer seed 42 is the string "42"); without one a random seed is
    chosen and returned. The stored draw carries the ticket count and a digest of the sorted tickets, so
    anyone holding the records can re-run it.
    """
    services = request.app.state.services
    session_id = body.session_id or (await services.state.current()).session_id
    survey_prefix = services.records.key("sessions", session_id, "survey") + "/"
    keys = await services.records.list_keys(survey_prefix)
    tickets = [key[len(survey_prefix):].removesuffix(".json") for key in keys]
    seed = str(body.seed) if body.seed is not None else secrets.token_hex(8)
    draw_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    record = {
        "id": draw_id,
        "session_id": session_id,
        "seed": seed,
        "count": body.count,
        "eligible": len(set(tickets)),
        "tickets_sha256": tickets_digest(tickets),
        "algorithm": DRAW_ALGORITHM,
        "winners": draw_winners(tickets, body.count, seed),
        "created_at": now_iso(),
    }
    object_key = services.draws.prefix(session_id) + f"{draw_id}.json"
    try:
        await services.records.put(object_key, record, "draws", only_if_new=True)
    except Conflict as exc:
        raise ApiError(409, "A draw with this id already exists; retry.", code="draw_exists") from exc
    services.draws.remember(object_key, record)
    return JSONResponse(record, status_code=201)
