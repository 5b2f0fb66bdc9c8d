"""The hold: requests wait here, first in first out, while no model server is ready (a cold start).

Bounded by count (``hold_max_requests``: past it, 503 at once) and by time (``hold_timeout_seconds``:
then 503). A held request is woken when a replica becomes ready; the woken resume in arrival order (each
waiter is a future, and asyncio runs their callbacks in the order they were resolved). A client that
leaves cancels its wait, which removes it: nothing of it was sent upstream.

While held, the wake signal rises: ``gateway_upstream_unavailable_total`` counts one on entry and one
per further second held, so its rate is the number of requests waiting for a model server. KEDA's
``unserved`` trigger (base/keda/scaledobject.yaml) reads that rate to wake vLLM from zero.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.errors import ApiError
from gateway.metrics import GatewayMetrics

# How often a held request re-checks for a ready replica, counts itself into the wake signal, and may
# send its client a keep-alive.
TICK_SECONDS = 1.0

Tick = Callable[[float], Awaitable[None]]


@dataclass(order=True, slots=True)
class Ticket:
    """One request's place in the hold: kept across re-entries (a replica that died as it was sent)."""

    seq: int
    deadline: float = field(compare=False)
    arrived: float = field(compare=False)
    future: asyncio.Future[None] | None = field(default=None, compare=False)


class Hold:
    def __init__(self, max_requests: int, timeout: float, retry_after: int, metrics: GatewayMetrics) -> None:
        self.max_requests = max_requests
        self.timeout = timeout
        self.retry_after = retry_after
        self.metrics = metrics
        self._waiting: list[Ticket] = []
        self._seq = itertools.count()

    @property
    def enabled(self) -> bool:
        return self.max_requests > 0

    def __len__(self) -> int:
        return len(self._waiting)

    def unavailable(self, message: str) -> ApiError:
        return ApiError(503, message, code="upstream_unavailable", retry_after=self.retry_after)

    def ticket(self) -> Ticket:
        now = asyncio.get_running_loop().time()
        return Ticket(seq=next(self._seq), deadline=now + self.timeout, arrived=now)

    async def wait(self, ticket: Ticket, available: Callable[[], bool], tick: Tick | None = None) -> None:
        """Wait until ``available()`` (checked on entry, when woken and every tick) or raise the 503.

        ``tick(seconds_held)`` runs about once a second while held (keep-alives to the client).
        """
        metrics = self.metrics
        if available():
            return
        if not self.enabled:
            metrics.upstream_unavailable.inc()
            raise self.unavailable("No model server is ready.")
        if len(self._waiting) >= self.max_requests:
            metrics.upstream_unavailable.inc()
            metrics.shed.labels("hold_full").inc()
            raise self.unavailable("No model server is ready and the gateway's hold queue is full.")
        loop = asyncio.get_running_loop()
        entered = loop.time()
        bisect.insort(self._waiting, ticket)
        metrics.held.inc()
        metrics.upstream_unavailable.inc()
        try:
            while True:
                remaining = ticket.deadline - loop.time()
                if remaining <= 0:
                    metrics.hold_timeouts.inc()
                    raise self.unavailable("No model server became ready in time.")
                ticket.future = loop.create_future()
                await asyncio.wait((ticket.future,), timeout=min(TICK_SECONDS, remaining))
                if available():
                    return
                if not ticket.future.done():
                    metrics.upstream_unavailable.inc()
                    if tick is not None:
                        await tick(loop.time() - ticket.arrived)
        finally:
            index = bisect.bisect_left(self._waiting, ticket)
            if index < len(self._waiting) and self._waiting[index] is ticket:
                del self._waiting[index]
            ticket.future = None
            metrics.held.dec()
            metrics.hold_seconds.observe(loop.time() - entered)

    def wake(self) -> None:
        """A replica became ready: wake every held request, oldest first."""
        for ticket in self._waiting:
            if ticket.future is not None and not ticket.future.done():
                ticket.future.set_result(None)
