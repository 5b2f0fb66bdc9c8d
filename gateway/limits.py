"""Admission control: per-client token buckets, the per-replica in-flight cap and upstream-queue shedding.

All of it runs on the event loop thread, so check-and-take has no await in between and needs no lock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from gateway.errors import ApiError
from gateway.metrics import GatewayMetrics


def client_address(scope: Scope, trusted_hops: int) -> str:
    """The client's address: the entry ``trusted_hops`` from the right of X-Forwarded-For.

    Each trusted proxy appends the address it received the request from, so the Nth entry from the right
    was written by the outermost trusted proxy; entries further left are whatever the client sent.
    A request may carry several X-Forwarded-For lines (a client can send its own line ahead of the one
    the proxy adds): they are one list, in order (RFC 9110 5.3), so all of them are read before the
    trusted hops are counted. With 0 trusted hops the header is ignored and the socket peer is used.
    """
    if trusted_hops > 0:
        hops = [part.strip()
                for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"
                for part in value.decode("latin-1").split(",") if part.strip()]
        if hops:
            return hops[-trusted_hops] if len(hops) >= trusted_hops else hops[0]
    peer = scope.get("client")
    return peer[0] if peer else "unknown"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per client key, least recently seen evicted beyond ``max_clients``."""

    def __init__(self, rate: float, burst: int, max_clients: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 when granted, else the seconds until they are available.

        A cost above the burst is charged as the burst (the whole bucket): such a request is let through
        once the bucket is full again instead of never.
        """
        cost = min(cost, float(self.burst))
        bucket = self._refilled(key)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until one token is available (0 when one is), taking nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(float(self.burst), bucket.tokens + (self._clock() - bucket.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class Admission:
    """Holds the in-flight count and decides whether a request may take an upstream slot."""

    def __init__(self, max_in_flight: int, shed_queue_waiting: int, retry_after: int,
                 metrics: GatewayMetrics) -> None:
        self.max_in_flight = max_in_flight
        self.shed_queue_waiting = shed_queue_waiting
        self.retry_after = retry_after
        self.metrics = metrics
        self.in_flight = 0
        # vLLM's waiting queue at the last successful poll; None when unknown (never shed on stale data).
        self.upstream_waiting: float | None = None

    def acquire(self) -> None:
        """Take a slot or raise 429; the caller must ``release()`` in ``finally``."""
        if self.in_flight >= self.max_in_flight:
            self.metrics.shed.labels("in_flight_cap").inc()
            raise ApiError(429, "The gateway is at its in-flight request limit; retry shortly.",
                           code="overloaded", retry_after=self.retry_after)
        waiting = self.upstream_waiting
        if waiting is not None and waiting > self.shed_queue_waiting:
            self.metrics.shed.labels("upstream_queue").inc()
            raise ApiError(429, "The model server's queue is full; retry shortly.",
                           code="upstream_queue_full", retry_after=self.retry_after)
        self.in_flight += 1
        self.metrics.in_flight.inc()

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()


class ClientSlots:
    """Requests in flight per client: no one client may hold more than ``per_client`` upstream slots.

    With n capped at ``max_n`` a client puts at most per_client x max_n sequences in vLLM's queue, which
    stays below the queue length at which the gateway sheds everyone (``shed_queue_waiting``).
    """

    def __init__(self, per_client: int, retry_after: int, metrics: GatewayMetrics) -> None:
        self.per_client = per_client
        self.retry_after = retry_after
        self.metrics = metrics
        self._held: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        held = self._held.get(key, 0)
        if held >= self.per_client:
            self.metrics.shed.labels("client_in_flight").inc()
            raise ApiError(429, f"This client already has {held} requests in flight; retry when one ends.",
                           code="rate_limit_exceeded", retry_after=self.retry_after)
        self._held[key] = held + 1

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)


class RateLimiter:
    """Per-client token buckets charged by the work a request asks for (see ``work_tokens``)."""

    def __init__(self, buckets: TokenBuckets, trusted_hops: int, metrics: GatewayMetrics,
                 slots: ClientSlots | None = None) -> None:
        self.buckets = buckets
        self.trusted_hops = trusted_hops
        self.metrics = metrics
        self.slots = slots

    def client(self, scope: Scope) -> str:
        return client_address(scope, self.trusted_hops)

    def check(self, scope: Scope, cost: float = 1.0) -> None:
        if not self.buckets.enabled:
            return
        wait = self.buckets.take(self.client(scope), cost)
        if wait > 0:
            self.metrics.shed.labels("rate_limit").inc()
            raise ApiError(429, "Rate limit reached for this client; retry after the delay in Retry-After.",
                           code="rate_limit_exceeded", retry_after=max(1, math.ceil(wait)))


def work_tokens(prompt_chars: int, completions: int, max_tokens: int) -> int:
    """What a request costs the model server, in tokens: its prompt (about 4 characters a token) plus
    every completion it asks for at its full length."""
    return math.ceil(prompt_chars / 4) + completions * max_tokens
