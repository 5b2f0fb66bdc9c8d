"""Records in S3 (no database): survey answers, questions, draws, and the shared mode/session state.

Key layout (under the optional ``GATEWAY_S3_PREFIX``):

    state/current.json                              mode and current session (replicas agree through it)
    sessions/<session>/session.json                 started_at, ended_at once archived
    sessions/<session>/survey/<record id>.json      one survey answer; its record id is the ticket
    sessions/<session>/questions/<record id>.json   one question and the model's answer
    sessions/<session>/draws/<draw id>.json         one prize draw: seed, count, eligible tickets, winners

Record ids carry no date: with an Idempotency-Key the id is a pure function of (session, kind, key), so a
retry lands on the same object whatever the clock says, and the conditional write (If-None-Match: *)
refuses the duplicate. boto3 is synchronous; every call runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import ApiError
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings

log = logging.getLogger("gateway.storage")

T = TypeVar("T")
Mode = Literal["quiz", "survey"]
RecordKind = Literal["survey", "questions", "draws"]
# Matched whole (fullmatch): "$" alone would accept a trailing newline. The anchors are for pydantic's
# ``pattern``, which searches.
SESSION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RECORD_ID = re.compile(r"^[0-9a-f]{24}$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_session_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def record_id(session_id: str, kind: str, idempotency_key: str | None) -> str:
    """24 hex characters: derived from the Idempotency-Key when there is one, random otherwise."""
    if idempotency_key is None:
        return secrets.token_hex(12)
    digest = hashlib.sha256(f"{session_id}\n{kind}\n{idempotency_key}".encode()).hexdigest()
    return digest[:24]


class Conflict(Exception):
    """The object already exists (conditional write refused)."""


class StorageUnavailable(Exception):
    pass


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in {"SlowDown", "Throttling"}
    return isinstance(exc, BotoCoreError)


def unavailable(settings: Settings) -> ApiError:
    return ApiError(503, "Storage is unavailable; nothing was recorded. Retry shortly.",
                    code="storage_unavailable", retry_after=settings.retry_after_seconds)


class RecordStore:
    def __init__(self, client: Any, settings: Settings, metrics: GatewayMetrics) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.bucket = settings.s3_bucket
        prefix = settings.s3_prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""

    def key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    async def _call(self, operation: Callable[[], T]) -> T:
        """Run a boto3 call in a thread with bounded retries and backoff on transient failures."""
        attempts = self.settings.s3_attempts
        for attempt in range(attempts):
            try:
                return await anyio.to_thread.run_sync(operation)
            except (BotoCoreError, ClientError) as exc:
                if _is_precondition_failed(exc):
                    raise Conflict from exc
                if _is_not_found(exc):
                    raise
                if not _retryable(exc) or attempt + 1 >= attempts:
                    log.warning("s3 call failed", extra={"error": repr(exc), "attempt": attempt + 1})
                    raise StorageUnavailable(str(exc)) from exc
                await anyio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def put(self, key: str, record: dict[str, Any], kind: str, *, only_if_new: bool = False) -> None:
        """PutObject; with ``only_if_new`` an existing object raises Conflict. Raises StorageUnavailable."""
        body = json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if only_if_new else {}
        started = time.perf_counter()
        try:
            await self._call(lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **extra))
        except StorageUnavailable:
            self.metrics.s3_write_failures.labels(kind).inc()
            raise
        self.metrics.s3_write_duration.labels(kind).observe(time.perf_counter() - started)

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            response = await self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        except ClientError:  # only NoSuchKey reaches here
            return None
        body = await anyio.to_thread.run_sync(response["Body"].read)
        return json.loads(body)

    async def exists(self, key: str) -> bool:
        try:
            await self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError:
            return False
        return True

    async def list_keys(self, prefix: str) -> list[str]:
        def list_all() -> list[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            return [item["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                    for item in page.get("Contents", [])]

        return await self._call(list_all)

    async def list_children(self, prefix: str) -> list[str]:
        """The names directly below ``prefix`` (S3 common prefixes)."""
        def list_all() -> list[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            return [item["Prefix"][len(prefix):].rstrip("/")
                    for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
                    for item in page.get("CommonPrefixes", [])]

        return await self._call(list_all)

    async def check(self) -> None:
        await self._call(lambda: self.client.head_bucket(Bucket=self.bucket))


def _error_code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def _is_precondition_failed(exc: Exception) -> bool:
    return _error_code(exc) in {"PreconditionFailed", "412"}


def _is_not_found(exc: Exception) -> bool:
    return _error_code(exc) in {"NoSuchKey", "404", "NotFound"}


@dataclass(slots=True)
class SessionState:
    mode: Mode
    session_id: str
    started_at: str
    updated_at: str


class StateStore:
    """``state/current.json`` with a short in-process cache, so replicas agree within its TTL."""

    def __init__(self, records: RecordStore, settings: Settings) -> None:
        self.records = records
        self.settings = settings
        self._cached: SessionState | None = None
        self._cached_at = 0.0

    @property
    def key(self) -> str:
        return self.records.key("state", "current.json")

    async def current(self) -> SessionState:
        fresh = time.monotonic() - self._cached_at < self.settings.state_cache_seconds
        if self._cached is not None and fresh:
            return self._cached
        data = await self.records.get(self.key)
        if data is None:
            state = self._fresh(self.settings.default_mode, new_session_id())
            try:
                await self.records.put(self.key, asdict(state), "state", only_if_new=True)
                await self._write_session_meta(state.session_id, state.started_at, None)
            except Conflict:  # another replica created it first
                data = await self.records.get(self.key)
        if data is not None:
            state = SessionState(**{field: data[field] for field in SessionState.__slots__})
        return self._remember(state)

    async def set_mode(self, mode: Mode) -> SessionState:
        state = await self._read()
        state.mode = mode
        state.updated_at = now_iso()
        await self.records.put(self.key, asdict(state), "state")
        return self._remember(state)

    async def new_session(self, session_id: str | None) -> tuple[SessionState, str]:
        """Start a session (the old one is archived with its end time); returns (state, old session id)."""
        old = await self._read()
        session_id = session_id or new_session_id()
        if session_id == old.session_id or await self.records.exists(
                self.records.key("sessions", session_id, "session.json")):
            raise ApiError(409, f"Session {session_id!r} already exists.", code="session_exists",
                           param="session_id")
        ended = now_iso()
        await self._write_session_meta(old.session_id, old.started_at, ended)
        state = self._fresh(old.mode, session_id)
        await self._write_session_meta(state.session_id, state.started_at, None)
        await self.records.put(self.key, asdict(state), "state")
        return self._remember(state), old.session_id

    async def _read(self) -> SessionState:
        self._cached = None
        return await self.current()

    async def _write_session_meta(self, session_id: str, started_at: str, ended_at: str | None) -> None:
        meta = {"session_id": session_id, "started_at": started_at, "ended_at": ended_at}
        await self.records.put(self.records.key("sessions", session_id, "session.json"), meta, "state")

    def _fresh(self, mode: Mode, session_id: str) -> SessionState:
        stamp = now_iso()
        return SessionState(mode=mode, session_id=session_id, started_at=stamp, updated_at=stamp)

    def _remember(self, state: SessionState) -> SessionState:
        self._cached, self._cached_at = state, time.monotonic()
        return state


def draw_winners(tickets: list[str], count: int, seed: str) -> list[str]:
    """Reproducible: the same ticket set, count and seed always give the same winners, in order."""
    ordered = sorted(set(tickets))
    return random.Random(seed).sample(ordered, min(count, len(ordered)))


def tickets_digest(tickets: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(tickets))).encode()).hexdigest()


@dataclass(slots=True)
class SessionStats:
    session_id: str
    questions: int
    surveys: int
    average_rating: float | None
    ratings: dict[str, int]


class Stats:
    """Counts per session from S3 listings; ratings read once per record (records never change)."""

    def __init__(self, records: RecordStore, settings: Settings) -> None:
        self.records = records
        self.settings = settings
        self._ratings: dict[str, int] = {}
        self._cached: list[SessionStats] | None = None
        self._cached_at = 0.0
        self._lock = anyio.Lock()

    async def sessions(self) -> list[SessionStats]:
        async with self._lock:
            fresh = time.monotonic() - self._cached_at < self.settings.stats_cache_seconds
            if self._cached is not None and fresh:
                return self._cached
            result = [await self._session(session_id)
                      for session_id in await self.records.list_children(self.records.key("sessions") + "/")]
            self._cached, self._cached_at = result, time.monotonic()
            return result

    async def _session(self, session_id: str) -> SessionStats:
        questions = await self.records.list_keys(self.records.key("sessions", session_id, "questions") + "/")
        surveys = await self.records.list_keys(self.records.key("sessions", session_id, "survey") + "/")
        unread = [key for key in surveys if key not in self._ratings]
        limiter = anyio.CapacityLimiter(8)

        async def read(key: str) -> None:
            async with limiter:
                record = await self.records.get(key)
            if record is not None and isinstance(record.get("rating"), int):
                self._ratings[key] = record["rating"]

        async with anyio.create_task_group() as group:
            for key in unread:
                group.start_soon(read, key)
        ratings = [self._ratings[key] for key in surveys if key in self._ratings]
        counts = {str(value): ratings.count(value) for value in range(1, 6)}
        average = round(sum(ratings) / len(ratings), 3) if ratings else None
        return SessionStats(session_id=session_id, questions=len(questions), surveys=len(surveys),
                            average_rating=average, ratings=counts)


class Draws:
    """The draws of a session, listed at most once per cache period; each draw read once (immutable)."""

    def __init__(self, records: RecordStore, settings: Settings) -> None:
        self.records = records
        self.settings = settings
        self._by_key: dict[str, dict[str, Any]] = {}
        self._listed: dict[str, tuple[float, list[str]]] = {}

    def prefix(self, session_id: str) -> str:
        return self.records.key("sessions", session_id, "draws") + "/"

    def remember(self, key: str, draw: dict[str, Any]) -> None:
        self._by_key[key] = draw
        self._listed.pop(draw["session_id"], None)

    async def of_session(self, session_id: str) -> list[dict[str, Any]]:
        listed = self._listed.get(session_id)
        if listed is None or time.monotonic() - listed[0] >= self.settings.state_cache_seconds:
            listed = (time.monotonic(), await self.records.list_keys(self.prefix(session_id)))
            self._listed[session_id] = listed
        draws = []
        for key in listed[1]:
            if key not in self._by_key:
                draw = await self.records.get(key)
                if draw is None:
                    continue
                self._by_key[key] = draw
            draws.append(self._by_key[key])
        return sorted(draws, key=lambda draw: draw["created_at"])
