"""uvicorn's httptools protocol with the limits it lacks: header size and count, header and body timeouts.

httptools keeps a header value that has not ended in memory however long it grows, and uvicorn arms no
timer before a request's headers are in nor while its body arrives. Ten connections sending unfinished
20 MB headers grew a gateway from 88 to 304 MB. This protocol counts what arrives before the end of the
headers and answers 431 past ``max_header_bytes`` or ``max_header_count``, and 408 when the headers take
longer than ``header_timeout`` (from the connection's first byte or from the end of the previous
request) or the body longer than ``body_timeout``; each time the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings

log = logging.getLogger("gateway.server")

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(settings.max_header_bytes, settings.max_header_count, settings.header_timeout,
                   settings.body_timeout)


def _plain_answer(status: int, message: str) -> bytes:
    body = message.encode()
    return b"".join([
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status]),
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ])


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # between a request's first byte (or the previous response) and its headers' end
        self._head_bytes = 0
        self._header_count = 0
        self._refused = False
        self._over_count = False
        self._timer: asyncio.TimerHandle | None = None

    # Timers ----------------------------------------------------------------------------------------

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, phase)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, phase: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        seconds = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        cycle = self.cycle
        if phase == "body" and cycle is not None:
            if cycle.response_started:
                self.transport.close()
                return
            # The app is still waiting for the body: it sees a disconnect, and nothing it sends goes out.
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(408, f"The request's {phase} did not arrive within {seconds:g} s.")

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm()
        log.info("connection refused", extra={"status": status, "reason": message,
                                              "client": self.client[0] if self.client else None})
        self.transport.write(_plain_answer(status, message))
        self.transport.close()

    # Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a first response: a silent connection would stay.
        self._arm(self.limits.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            if self._timer is None:
                self._arm(self.limits.header_timeout, "headers")
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refused:
            return
        if self._over_count:
            self._refuse(431, f"The request has more than {self.limits.max_header_count} headers.")
        elif self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"The request's headers exceed {self.limits.max_header_bytes} bytes.")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            self._over_count = True
        if not (self._refused or self._over_count):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused or self._over_count:
            return  # answered by data_received once the parser returns; no request is started
        self._in_head = False
        self._arm(self.limits.body_timeout, "body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not (self._refused or self._over_count):
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused or self._over_count:
            return
        self._disarm()
        # Whatever arrives next belongs to the next request's head (timed from its first byte).
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        super().on_message_complete()


def protocol_factory(settings: Settings) -> functools.partial[GuardedHttpToolsProtocol]:
    """What uvicorn.Config(http=...) takes: it calls it with config, server_state and app_state."""
    return functools.partial(GuardedHttpToolsProtocol, limits=ServerLimits.from_settings(settings))
