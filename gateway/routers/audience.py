"""The audience API behind the web page: config, questions (quiz), survey, stats, winner check.

A 2xx means the record is in S3. Contract details (bodies, SSE events) are in gateway/README.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from httpx_sse import EventSource, SSEError
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from gateway.bodies import CheckedJsonRoute
from gateway.errors import ApiError, send_error
from gateway.http1 import UpstreamError, UpstreamResponse
from gateway.identity import COOKIE_NAME, EntrantCookies, SurveyEntries
from gateway.limits import work_tokens
from gateway.relay import KEEP_ALIVE, MAX_ERROR_BODY, SSE_HEADERS, run_watching_disconnect
from gateway.settings import Settings, SettingsDep
from gateway.storage import (
    RECORD_ID,
    SESSION_ID,
    Conflict,
    StorageUnavailable,
    now_iso,
    record_id,
    unavailable,
)
from gateway.upstream import as_httpx_response, upstream_http_error

router = APIRouter(prefix="/api", route_class=CheckedJsonRoute)

QUEUED_MESSAGE = "The model is starting; your question is queued."
IDEMPOTENCY_HEADER = "idempotency-key"
MAX_IDEMPOTENCY_KEY = 200


def field_error(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", code="validation_error", param=field,
                    extra={"fields": {field: message}})


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.",
                       code="invalid_idempotency_key", param="Idempotency-Key")
    return key


def replayed(record: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status == 200:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(record, status_code=status, headers=headers)


@router.get("/config")
async def config(request: Request, settings: SettingsDep) -> dict[str, Any]:
    state = await request.app.state.services.state.current()
    return {
        "mode": state.mode,
        "session_id": state.session_id,
        "public_url": settings.public_url,
        "limits": {
            "question_max_chars": settings.question_max_chars,
            "company_max_chars": settings.company_max_chars,
            "feedback_max_chars": settings.feedback_max_chars,
        },
    }


class QuestionIn(BaseModel):
    question: str
    stream: bool = False


class SurveyIn(BaseModel):
    rating: int = Field(strict=True, ge=1, le=5)
    company: str = ""
    feedback: str = ""


@router.post("/questions", response_model=None)
async def ask(body: QuestionIn, request: Request, settings: SettingsDep) -> Response:
    services = request.app.state.services
    question = body.question.strip()
    if not question:
        raise field_error("question", "must not be empty")
    if len(question) > settings.question_max_chars:
        raise field_error("question", f"must be at most {settings.question_max_chars} characters")
    services.rate_limiter.check(request.scope, work_tokens(len(question), 1, settings.question_max_tokens))
    key = idempotency_key(request)
    state = await services.state.current()
    rid = record_id(state.session_id, "questions", key)
    object_key = services.records.key("sessions", state.session_id, "questions", f"{rid}.json")
    if key is not None:
        existing = await services.records.get(object_key)
        if existing is not None:
            if body.stream:
                return AnswerReplay(existing)
            return replayed(existing, 200)
    record = {"id": rid, "session_id": state.session_id, "question": question, "model": settings.model}
    return AnswerResponse(services, record, object_key, body.stream)


class AnswerReplay(Response):
    """A streamed question retried with the same Idempotency-Key: the stored answer as one delta."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.background = None
        self.status_code = 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, (b"idempotent-replayed", b"true")]})
        body = _event({"type": "delta", "text": self.record.get("answer", "")}) + _event(
            {"type": "done", **self.record})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


class AnswerResponse(Response):
    """Asks the model (streaming upstream, bounded max_tokens), then stores question and answer in S3.

    ``stream``: SSE events ``delta`` as tokens arrive, then ``done`` (after S3 accepted the record) or
    ``error``. Otherwise one JSON answer, 201 once stored. Failures before the first token are HTTP
    errors either way; a client that leaves cancels the model request and nothing is stored.
    """

    def __init__(self, services: Any, record: dict[str, Any], object_key: str, stream: bool) -> None:
        self.services = services
        self.record = record
        self.object_key = object_key
        self.stream = stream
        self.background = None
        self.status_code = 200
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = self.services.relay
        try:
            relay.admission.acquire()
        except ApiError as error:
            await send_error(send, error)
            return
        try:
            await run_watching_disconnect(receive, lambda: self._answer(send), relay.metrics)
        finally:
            relay.admission.release()

    def _request_body(self) -> bytes:
        settings: Settings = self.services.settings
        return json.dumps({
            "model": settings.model,
            "messages": [
                {"role": "system", "content": settings.question_system_prompt},
                {"role": "user", "content": self.record["question"]},
            ],
            "max_tokens": settings.question_max_tokens,
            "stream": True,
        }).encode()

    async def _answer(self, send: Send) -> None:
        settings: Settings = self.services.settings
        relay = self.services.relay
        arrived = time.perf_counter()
        parts: list[str] = []
        finish_reason: str | None = None
        upstream: UpstreamResponse | None = None
        first = True
        with anyio.CancelScope() as timer:
            hooks = _QuestionHooks(self, send, timer, settings)
            try:
                upstream = await relay.upstream.request("POST", "/v1/chat/completions", self._request_body(),
                                                        hooks=hooks)
                if upstream.status != 200:
                    raise upstream_http_error(upstream.status, await upstream.read(MAX_ERROR_BODY))
                async for event in EventSource(as_httpx_response(upstream)).aiter_sse():
                    timer.deadline = min(hooks.total_deadline,
                                         anyio.current_time() + settings.upstream_idle_timeout)
                    if event.data == "[DONE]":
                        break
                    data = json.loads(event.data)
                    if isinstance(data.get("error"), dict):
                        raise upstream_http_error(502, event.data.encode())
                    choices = data.get("choices") or []
                    if not choices:
                        continue
                    if first:
                        relay.metrics.time_to_first_token.labels("/api/questions").observe(
                            time.perf_counter() - arrived)
                        first = False
                    finish_reason = choices[0].get("finish_reason") or finish_reason
                    text = (choices[0].get("delta") or {}).get("content") or ""
                    if text:
                        parts.append(text)
                        if self.stream:
                            await self._start(send)
                            event = _event({"type": "delta", "text": text})
                            await send({"type": "http.response.body", "body": event, "more_body": True})
            except ApiError as error:
                await self._fail(send, error)
                return
            except (UpstreamError, SSEError, ValueError):
                relay.metrics.upstream_errors.labels("protocol" if first else "midstream").inc()
                await self._fail(send, ApiError(502, "The model server connection was lost.",
                                                code="upstream_disconnected"))
                return
            finally:
                if upstream is not None:
                    upstream.release()
        if timer.cancelled_caught:
            relay.metrics.upstream_errors.labels("timeout").inc()
            await self._fail(send, ApiError(504, "The model did not answer in time.",
                                            code="upstream_timeout"))
            return
        relay.metrics.request_duration.labels("/api/questions").observe(time.perf_counter() - arrived)
        record = {**self.record, "answer": "".join(parts), "finish_reason": finish_reason,
                  "created_at": now_iso()}
        status = 201
        try:
            await self.services.records.put(self.object_key, record, "questions", only_if_new=True)
        except Conflict:
            record = await self.services.records.get(self.object_key) or record
            status = 200
        except StorageUnavailable:
            await self._fail(send, unavailable(settings))
            return
        if self.stream:
            await self._start(send)
            await send({"type": "http.response.body", "body": _event({"type": "done", **record}),
                        "more_body": False})
        else:
            payload = json.dumps(record, ensure_ascii=False).encode()
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _start(self, send: Send) -> None:
        if not self.started:
            self.started = True
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

    async def _fail(self, send: Send, error: ApiError) -> None:
        if self.started:
            event = _event({"type": "error", **error.body()})
            await send({"type": "http.response.body", "body": event, "more_body": False})
        else:
            self.started = True
            await send_error(send, error)


class _QuestionHooks:
    """Timers around the hold; a held streamed question is told it is queued, then kept alive."""

    def __init__(self, answer: AnswerResponse, send: Send, timer: anyio.CancelScope,
                 settings: Settings) -> None:
        self.answer = answer
        self.send = send
        self.timer = timer
        self.settings = settings
        self.total_deadline = math.inf
        self.next_keepalive = settings.hold_keepalive_seconds

    def holding(self) -> None:
        self.timer.deadline = math.inf
        self.total_deadline = math.inf

    def sending(self) -> None:
        now = anyio.current_time()
        self.total_deadline = now + self.settings.upstream_total_timeout
        self.timer.deadline = min(self.total_deadline, now + self.settings.upstream_first_token_timeout)

    async def tick(self, seconds_held: float) -> None:
        answer = self.answer
        if not answer.stream:
            return  # a JSON answer's status must wait for the outcome (see gateway/README.md)
        if not answer.started:
            # The first second held: the page says the model is starting instead of a bare spinner.
            await answer._start(self.send)
            event = _event({"type": "queued", "message": QUEUED_MESSAGE, "held_seconds": round(seconds_held)})
            await self.send({"type": "http.response.body", "body": event, "more_body": True})
        elif seconds_held >= self.next_keepalive:
            self.next_keepalive = seconds_held + self.settings.hold_keepalive_seconds
            await self.send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})


@router.post("/survey")
async def survey(body: SurveyIn, request: Request, settings: SettingsDep) -> JSONResponse:
    """One entry per entrant and session (gateway/identity.py): a second submission from the same
    browser answers its first ticket (200), whatever it says."""
    services = request.app.state.services
    services.lookups.check(request.scope)
    company = body.company.strip()
    feedback = body.feedback.strip()
    fields: dict[str, str] = {}
    if len(company) > settings.company_max_chars:
        fields["company"] = f"must be at most {settings.company_max_chars} characters"
    if len(feedback) > settings.feedback_max_chars:
        fields["feedback"] = f"must be at most {settings.feedback_max_chars} characters"
    if fields:
        first = next(iter(fields))
        summary = "; ".join(f"{name}: {message}" for name, message in fields.items())
        raise ApiError(422, summary, code="validation_error", param=first, extra={"fields": fields})
    key = idempotency_key(request)
    cookies: EntrantCookies = request.app.state.cookies
    entries: SurveyEntries = request.app.state.entries
    entrant = cookies.entrant(request.cookies.get(COOKIE_NAME))
    if entrant is None:
        entrant = cookies.new_entrant(key)
    cookie = {"Set-Cookie": cookies.set_cookie_header(entrant)}
    state = await services.state.current()
    rid = record_id(state.session_id, "survey", entrant)
    object_key = services.records.key("sessions", state.session_id, "survey", f"{rid}.json")
    address = services.rate_limiter.client(request.scope)
    if entries.full(state.session_id, address):
        existing = await services.records.get(object_key)
        if existing is None:
            raise entries.refusal()
        return replayed(existing, 200, cookie)
    record = {"ticket": rid, "session_id": state.session_id, "rating": body.rating, "company": company,
              "feedback": feedback, "created_at": now_iso()}
    try:
        await services.records.put(object_key, record, "survey", only_if_new=True)
    except Conflict:
        existing = await services.records.get(object_key)
        return replayed(existing or record, 200, cookie)
    entries.count(state.session_id, address)
    return replayed(record, 201, cookie)


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    services = request.app.state.services
    state = await services.state.current()
    sessions = await services.stats.sessions()
    return {"session_id": state.session_id, "mode": state.mode,
            "sessions": [asdict(session) for session in sessions]}


@router.get("/winner")
async def winner(request: Request, ticket: str, session: str | None = None) -> dict[str, Any]:
    services = request.app.state.services
    services.lookups.check(request.scope)
    if not RECORD_ID.fullmatch(ticket):
        raise field_error("ticket", "must be the 24-character ticket returned by /api/survey")
    if session is not None and not SESSION_ID.fullmatch(session):
        raise field_error("session", "is not a session id")
    session_id = session or (await services.state.current()).session_id
    ticket_key = services.records.key("sessions", session_id, "survey", f"{ticket}.json")
    if not await services.records.exists(ticket_key):
        raise ApiError(404, f"No survey ticket {ticket} in session {session_id}.", code="ticket_not_found",
                       param="ticket")
    draws = await services.draws.of_session(session_id)
    for draw in draws:
        if ticket in draw["winners"]:
            return {"ticket": ticket, "session_id": session_id, "drawn": True, "winner": True,
                    "draw_id": draw["id"], "rank": draw["winners"].index(ticket) + 1}
    return {"ticket": ticket, "session_id": session_id, "drawn": bool(draws), "winner": False,
            "draw_id": draws[-1]["id"] if draws else None, "rank": None}
