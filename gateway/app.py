"""The app factory: one FastAPI app per call, with its own settings, metrics registry and clients."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import boto3
import httpx
from botocore.config import Config
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.errors import install_error_handlers
from gateway.hold import Hold
from gateway.identity import EntrantCookies, SurveyEntries
from gateway.limits import Admission, ClientSlots, RateLimiter, TokenBuckets
from gateway.metrics import GatewayMetrics
from gateway.middleware import GatewayMiddleware
from gateway.model_info import ModelContext
from gateway.relay import RelayServices
from gateway.replicas import Replicas
from gateway.routers import admin, audience, health, metrics, openai_proxy, scaling, ui
from gateway.settings import Settings
from gateway.storage import Draws, RecordStore, StateStore, Stats, StorageUnavailable, unavailable
from gateway.upstream import Upstream, upstream_headers

log = logging.getLogger("gateway")


@dataclass(slots=True)
class Services:
    """Everything the routes share, built by the lifespan."""

    settings: Settings
    metrics: GatewayMetrics
    upstream: Upstream
    relay: RelayServices
    rate_limiter: RateLimiter
    lookups: RateLimiter
    model_context: ModelContext
    prometheus_http: httpx.AsyncClient  # the admin scaling view's reads of Prometheus's HTTP API
    records: RecordStore
    state: StateStore
    stats: Stats
    draws: Draws


def build_s3_client(settings: Settings) -> Any:
    # Retries are the store's own (bounded, with backoff, counted); botocore makes one attempt per call.
    config = Config(
        region_name=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=32,
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gateway_metrics = GatewayMetrics()
    admission = Admission(settings.max_in_flight, settings.shed_queue_waiting, settings.retry_after_seconds,
                          gateway_metrics)
    buckets = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst,
                           settings.rate_limit_max_clients)
    slots = ClientSlots(settings.max_in_flight_per_client, settings.retry_after_seconds, gateway_metrics)
    rate_limiter = RateLimiter(buckets, settings.trusted_hops, gateway_metrics, slots)
    lookup_buckets = TokenBuckets(settings.lookup_rate_per_second, settings.lookup_burst,
                                  settings.rate_limit_max_clients)
    lookups = RateLimiter(lookup_buckets, settings.trusted_hops, gateway_metrics)
    admin_failures = TokenBuckets(settings.admin_failures_per_minute / 60, settings.admin_failures_burst,
                                  settings.rate_limit_max_clients)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hold = Hold(settings.hold_max_requests, settings.hold_timeout_seconds, settings.retry_after_seconds,
                    gateway_metrics)
        # Created on the running event loop: the replicas' pools belong to it.
        replicas = Replicas(settings, gateway_metrics, upstream_headers(settings), on_ready=hold.wake)
        upstream = Upstream(replicas, hold, settings, gateway_metrics)
        s3 = build_s3_client(settings)
        prometheus_http = httpx.AsyncClient(follow_redirects=False)
        records = RecordStore(s3, settings, gateway_metrics)
        app.state.services = Services(
            settings=settings,
            metrics=gateway_metrics,
            upstream=upstream,
            relay=RelayServices(settings, upstream, admission, gateway_metrics),
            rate_limiter=rate_limiter,
            lookups=lookups,
            model_context=ModelContext(upstream, settings),
            prometheus_http=prometheus_http,
            records=records,
            state=StateStore(records, settings),
            stats=Stats(records, settings),
            draws=Draws(records, settings),
        )
        try:
            async with anyio.create_task_group() as background:
                background.start_soon(replicas.probe)
                if settings.upstream_discovery_dns:
                    background.start_soon(replicas.discover)
                if settings.upstream_metrics_poll_seconds > 0:
                    background.start_soon(replicas.poll_queues, admission)
                log.info("gateway started", extra={"upstream": settings.upstream_url,
                                                   "discovery": settings.upstream_discovery_dns or None,
                                                   "bucket": settings.s3_bucket})
                if settings.admin_disabled_reason:
                    log.warning("admin endpoints disabled", extra={"reason": settings.admin_disabled_reason})
                if settings.client_cookie_secret is None:
                    log.warning("client cookie secret not set", extra={
                        "reason": "GATEWAY_CLIENT_COOKIE_SECRET is not set: each replica signs survey "
                                  "cookies with its own random key, so a browser moving between replicas "
                                  "counts as a new entrant"})
                # Everything allocated so far (modules, clients, the app) lives as long as the process:
                # out of the collector's reach, a full collection no longer walks it, which takes the
                # longest pauses out of the streams' latency.
                gc.freeze()
                yield
                background.cancel_scope.cancel()
        finally:
            replicas.close()
            with anyio.CancelScope(shield=True):
                await prometheus_http.aclose()
            s3.close()
            log.info("gateway stopped", extra={"in_flight": admission.in_flight})

    app = FastAPI(title="LLM inference gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.metrics = gateway_metrics
    app.state.admission = admission
    app.state.admin_failures = admin_failures
    app.state.cookies = EntrantCookies(settings)
    app.state.entries = SurveyEntries(settings.survey_entries_per_address)
    # Set when the server begins to stop (gateway/cli.py): /readyz then answers 503.
    app.state.draining = False
    install_error_handlers(app)

    async def storage_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
        error = unavailable(settings)
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)

    app.add_exception_handler(StorageUnavailable, storage_unavailable)
    # Starlette wraps the last added outermost: GatewayMiddleware, then ProxyDispatch, then the router.
    app.add_middleware(openai_proxy.ProxyDispatch)
    app.add_middleware(GatewayMiddleware, metrics=gateway_metrics, max_body_bytes=settings.max_body_bytes)
    for module in (openai_proxy, audience, admin, scaling, health, metrics, ui):
        app.include_router(module.router)
    return app
