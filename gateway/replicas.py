"""The model server replicas: discovery, readiness, least-outstanding choice, and the summed vLLM queue.

Discovery is the headless Service's DNS name (``GATEWAY_UPSTREAM_DISCOVERY_DNS``), resolved again every
``GATEWAY_UPSTREAM_DISCOVERY_SECONDS``: Kubernetes publishes there the addresses of the vLLM pods that are
Ready, so the gateway needs no Kubernetes API access, no RBAC and no client library, and sees a new pod
as soon as its readiness probe passes (plus CoreDNS's cache, 5 s by default for cluster records). With no
discovery name, a fixed list (``GATEWAY_UPSTREAM_REPLICAS``) or the Service address alone is used; when
the name does not resolve, or resolves to nothing, the Service address (``GATEWAY_UPSTREAM_URL``) is the
one replica, so a broken DNS never leaves the gateway without a way to the model server.

Each request goes to the ready replica with the fewest requests outstanding from this gateway: a replica
that just became ready has none, so it takes load at once, where kube-proxy's per-connection balancing
would leave it idle until pooled keep-alive connections churn. A replica that refuses a connection, or
answers 503 while its ``/health`` fails (loading), is marked down and probed (``/health``) every
``GATEWAY_UPSTREAM_PROBE_SECONDS`` until it answers; its coming back wakes the hold (gateway/hold.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import anyio
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from gateway.http1 import UpstreamConnectError, UpstreamError, UpstreamPool
from gateway.limits import Admission
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings

log = logging.getLogger("gateway.replicas")

WAITING_METRIC = "vllm:num_requests_waiting"
# vLLM renders /metrics and /health on its API server's event loop: allow for a busy one.
CHECK_TIMEOUT = 2.0


class Replica:
    __slots__ = ("outstanding", "pool", "ready", "sent", "url", "waiting")

    def __init__(self, url: str, pool: UpstreamPool, sent: Counter) -> None:
        self.url = url
        self.pool = pool
        self.sent = sent  # this replica's child of gateway_upstream_replica_requests_total
        # Optimistic until a request or a probe says otherwise: Kubernetes lists only Ready pods, and a
        # first request that fails only marks the replica down and goes elsewhere (or waits).
        self.ready = True
        self.outstanding = 0
        self.waiting: float | None = None


def parse_waiting(metrics_text: str) -> float:
    """Sum ``vllm:num_requests_waiting`` over its label sets (one per model)."""
    # Only the waiting family's lines go to the parser: vLLM's exposition is large and the poll runs on
    # the event loop every second.
    lines = [line for line in metrics_text.splitlines() if WAITING_METRIC in line]
    total = 0.0
    found = False
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        if family.name == WAITING_METRIC:
            for sample in family.samples:
                if sample.name == WAITING_METRIC:
                    total += sample.value
                    found = True
    if not found:
        raise ValueError(f"{WAITING_METRIC} not found in the upstream metrics")
    return total


def replica_urls(service_url: str, addresses: Iterable[str]) -> list[str]:
    """One URL per address, at the Service URL's scheme and port."""
    parts = urlsplit(service_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    urls = []
    for address in sorted(set(addresses)):
        host = f"[{address}]" if ":" in address else address
        urls.append(urlunsplit((parts.scheme, f"{host}:{port}", parts.path, "", "")))
    return urls


class Replicas:
    """The replicas this gateway sends to; everything runs on the event loop, so no locks."""

    def __init__(self, settings: Settings, metrics: GatewayMetrics, headers: dict[str, str],
                 on_ready: Callable[[], None]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.headers = headers
        self.on_ready = on_ready
        self.members: dict[str, Replica] = {}
        self._ready: list[Replica] = []
        self._turn = 0
        self._down = asyncio.Event()
        self.discovered = False  # the last discovery found addresses (False: the Service address)
        self.update(settings.upstream_replicas or [settings.upstream_url])

    # Membership ------------------------------------------------------------------------------------

    def update(self, urls: list[str]) -> None:
        """Make the members exactly ``urls`` (new ones ready, gone ones closed)."""
        for url in [url for url in self.members if url not in urls]:
            gone = self.members.pop(url)
            gone.pool.close()
            self.metrics.replica_requests.remove(url)
            log.info("replica removed", extra={"replica": url})
        for url in urls:
            if url not in self.members:
                self.members[url] = Replica(url, self._pool(url), self.metrics.replica_requests.labels(url))
                log.info("replica added", extra={"replica": url})
        self._changed()

    def _pool(self, url: str) -> UpstreamPool:
        settings = self.settings
        return UpstreamPool(url, connect_timeout=settings.upstream_connect_timeout,
                            keepalive=settings.upstream_keepalive_seconds,
                            max_idle=settings.upstream_max_idle_connections, headers=self.headers)

    def _changed(self) -> None:
        was_ready = bool(self._ready)
        self._ready = [replica for replica in self.members.values() if replica.ready]
        down = len(self.members) - len(self._ready)
        self.metrics.replicas.labels("ready").set(len(self._ready))
        self.metrics.replicas.labels("down").set(down)
        if down:
            self._down.set()
        if self._ready and not was_ready:
            self.on_ready()

    # The hot path ----------------------------------------------------------------------------------

    def available(self) -> bool:
        return bool(self._ready)

    def pick(self) -> Replica | None:
        """The ready replica with the fewest outstanding requests (None: no replica is ready).

        Ties go round the ready list, so sequential requests spread too and every replica is tried.
        """
        ready = self._ready
        count = len(ready)
        if count == 1:
            return ready[0]
        if not count:
            return None
        self._turn = start = (self._turn + 1) % count
        best = ready[start]
        for offset in range(1, count):
            replica = ready[(start + offset) % count]
            if replica.outstanding < best.outstanding:
                best = replica
        return best

    def mark_down(self, replica: Replica) -> None:
        if replica.ready and replica.url in self.members:
            replica.ready = False
            log.warning("replica down", extra={"replica": replica.url})
            self._changed()

    def mark_up(self, replica: Replica) -> None:
        if not replica.ready and replica.url in self.members:
            replica.ready = True
            log.info("replica ready", extra={"replica": replica.url})
            self._changed()
            self.on_ready()

    @property
    def waiting(self) -> float | None:
        """vLLM's waiting queue summed over the ready replicas; None while any of them is unknown."""
        total = 0.0
        for replica in self._ready:
            if replica.waiting is None:
                return None
            total += replica.waiting
        return total if self._ready else None

    # Background ------------------------------------------------------------------------------------

    async def healthy(self, replica: Replica) -> bool:
        """``GET /health`` answered 200."""
        try:
            with anyio.fail_after(CHECK_TIMEOUT):
                response = await replica.pool.get("/health")
                try:
                    await response.read(4096)
                finally:
                    response.release()
        except (UpstreamConnectError, UpstreamError, TimeoutError):
            return False
        return response.status == 200

    async def probe(self) -> None:
        """Probe the replicas marked down until each answers ``/health``."""
        interval = self.settings.upstream_probe_seconds
        while True:
            await self._down.wait()
            down = [replica for replica in self.members.values() if not replica.ready]
            if not down:
                self._down.clear()
                continue
            async with anyio.create_task_group() as group:
                for replica in down:
                    group.start_soon(self._probe_one, replica)
            await anyio.sleep(interval)

    async def _probe_one(self, replica: Replica) -> None:
        if await self.healthy(replica):
            self.mark_up(replica)

    async def discover(self) -> None:
        """Resolve the headless Service's name every interval; the Service address when it gives nothing."""
        name = self.settings.upstream_discovery_dns
        port = urlsplit(self.settings.upstream_url).port or 80
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
                addresses = [str(info[4][0]) for info in infos]
                failures = 0
            except OSError as exc:  # socket.gaierror: the name does not resolve (or DNS is down)
                addresses = []
                failures += 1
                if failures == 1:
                    log.warning("replica discovery failed; using the Service address",
                                extra={"name": name, "error": repr(exc)})
            self.discovered = bool(addresses)
            self.update(replica_urls(self.settings.upstream_url, addresses) if addresses
                        else [self.settings.upstream_url])
            await anyio.sleep(self.settings.upstream_discovery_seconds)

    async def poll_queues(self, admission: Admission) -> None:
        """Keep each ready replica's vLLM waiting queue, and their sum for queue shedding, current."""
        interval = self.settings.upstream_metrics_poll_seconds
        failures = 0
        while True:
            replicas = list(self._ready)
            async with anyio.create_task_group() as group:
                for replica in replicas:
                    group.start_soon(self._poll_one, replica)
            failed = [replica.url for replica in replicas if replica.waiting is None]
            failures = failures + 1 if failed else 0
            if failures == 1:
                log.warning("upstream metrics poll failed", extra={"replicas": failed})
            waiting = self.waiting
            # Unknown (None) while a ready replica's queue is: never shed on a partial or stale sum.
            admission.upstream_waiting = waiting
            self.metrics.upstream_waiting.set(-1 if waiting is None else waiting)
            await anyio.sleep(interval)

    async def _poll_one(self, replica: Replica) -> None:
        try:
            replica.waiting = parse_waiting(
                await read_metrics(replica, self.settings.upstream_metrics_timeout_seconds))
        except (UpstreamConnectError, UpstreamError, TimeoutError, ValueError):
            replica.waiting = None

    def close(self) -> None:
        for replica in self.members.values():
            replica.pool.close()


async def read_metrics(replica: Replica, timeout: float) -> str:
    """One replica's /metrics text; raises UpstreamError, TimeoutError or ValueError (not a 200)."""
    with anyio.fail_after(timeout):
        response = await replica.pool.get("/metrics")
        try:
            body = await response.read()
        finally:
            response.release()
    if response.status != 200:
        raise ValueError(f"/metrics answered {response.status}")
    return body.decode("utf-8", "replace")
