"""The scaling view (admin): vLLM's queue, replicas ready and desired, GPU nodes by capacity type and the
time since the last scale event, read from Prometheus's HTTP API (``GATEWAY_PROMETHEUS_URL``).

One gateway replica sees neither its peers nor the Deployments; Prometheus does, through kube-state-metrics
and Karpenter's metrics (apps/base/kube-prometheus-stack.yaml, base/monitoring). The queries are the ones
the gate checks against its catalogue of exporters (tests/monitoring/test_scaling_view_queries.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.routers.admin import require_admin
from gateway.settings import Settings, SettingsDep

NO_STORE = {"Cache-Control": "no-store"}
# How far back the last scale event is looked for, and at what resolution.
HISTORY_SECONDS = 3600
HISTORY_STEP_SECONDS = 5
SCALING_VIEW_OFF = "the scaling view is off: GATEWAY_PROMETHEUS_URL is not set"

router = APIRouter(prefix="/api/admin", dependencies=[Depends(require_admin)])


def scaling_queries(settings: Settings) -> dict[str, str]:
    """name -> PromQL of every figure the view shows (instant queries; `desired` is also read as a range)."""
    namespace = settings.scaling_namespace
    vllm = f'namespace="{namespace}", deployment="{settings.scaling_deployment}"'
    hpa = f'namespace="{namespace}", horizontalpodautoscaler="{settings.scaling_deployment}"'
    gateway = f'namespace="{namespace}", deployment="{settings.scaling_gateway_deployment}"'
    return {
        "waiting": "sum(vllm:num_requests_waiting)",
        "running": "sum(vllm:num_requests_running)",
        "ready": f"sum(kube_deployment_status_replicas_ready{{{vllm}}})",
        "desired": f"sum(kube_horizontalpodautoscaler_status_desired_replicas{{{hpa}}})",
        "gateway_ready": f"sum(kube_deployment_status_replicas_ready{{{gateway}}})",
        "gpu_nodes": 'count by (capacity_type) (karpenter_nodes_allocatable{resource_type="nvidia.com/gpu"})',
    }


class PrometheusUnavailable(Exception):
    pass


@dataclass(frozen=True)
class PrometheusClient:
    http: httpx.AsyncClient
    url: str
    timeout: float

    async def _get(self, path: str, params: Mapping[str, str | int | float]) -> Any:
        try:
            response = await self.http.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusUnavailable(f"HTTP {response.status_code}, not a Prometheus API answer") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(f"HTTP {response.status_code}: {body.get('error', 'query failed')}")
        return body["data"]

    async def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        data = await self._get("/api/v1/query", {"query": query})
        return [(dict(item["metric"]), float(item["value"][1])) for item in data.get("result", ())]

    async def series(self, query: str, start: float, end: float, step: int) -> list[tuple[float, float]]:
        params = {"query": query, "start": start, "end": end, "step": step}
        data = await self._get("/api/v1/query_range", params)
        result = data.get("result") or []
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


def _scalar(samples: list[tuple[dict[str, str], float]]) -> float | None:
    if not samples or math.isnan(samples[0][1]):
        return None
    value = samples[0][1]
    return int(value) if value.is_integer() else round(value, 2)


def last_change(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
    """(time, from, to) of the last step at which the value changed, or None if it never did."""
    for (_, before), (at, after) in zip(reversed(points[:-1]), reversed(points[1:]), strict=True):
        if before != after:
            return at, before, after
    return None


async def _read(client: PrometheusClient, queries: Mapping[str, str], now: float
                ) -> tuple[dict[str, list[tuple[dict[str, str], float]]], list[tuple[float, float]]]:
    """Every instant query and the desired replicas over the last hour, concurrently."""
    try:
        async with asyncio.TaskGroup() as group:
            instant = {name: group.create_task(client.vector(query)) for name, query in queries.items()}
            history = group.create_task(
                client.series(queries["desired"], now - HISTORY_SECONDS, now, HISTORY_STEP_SECONDS)
            )
    except* PrometheusUnavailable as failures:
        raise failures.exceptions[0] from None
    return {name: task.result() for name, task in instant.items()}, history.result()


@router.get("/scaling")
async def scaling(request: Request, settings: SettingsDep) -> JSONResponse:
    """The scaling view's figures, read now from Prometheus. A figure Prometheus has no series for is null;
    without GATEWAY_PROMETHEUS_URL, or when Prometheus cannot be read, `reachable` is false and `error` says
    why (the admin page keeps polling, and shows it)."""
    if not settings.prometheus_url:
        off = {"prometheus_url": None, "reachable": False, "error": SCALING_VIEW_OFF}
        return JSONResponse(off, headers=NO_STORE)
    http = request.app.state.services.prometheus_http
    client = PrometheusClient(http, settings.prometheus_url, settings.prometheus_timeout)
    now = time.time()
    try:
        results, history = await _read(client, scaling_queries(settings), now)
    except PrometheusUnavailable as exc:
        unreachable = {"prometheus_url": settings.prometheus_url, "reachable": False, "error": str(exc)}
        return JSONResponse(unreachable, headers=NO_STORE)
    change = last_change(history)
    body = {
        "prometheus_url": settings.prometheus_url,
        "reachable": True,
        "error": None,
        "queue": {"waiting": _scalar(results["waiting"]), "running": _scalar(results["running"])},
        "replicas": {
            "ready": _scalar(results["ready"]),
            "desired": _scalar(results["desired"]),
            "gateway_ready": _scalar(results["gateway_ready"]),
        },
        "gpu_nodes": {
            labels.get("capacity_type", "unlabelled"): int(value) for labels, value in results["gpu_nodes"]
        },
        "last_scale_event": None if change is None else {
            "seconds_ago": round(now - change[0]),
            "from": int(change[1]),
            "to": int(change[2]),
        },
        "history_seconds": HISTORY_SECONDS,
    }
    return JSONResponse(body, headers=NO_STORE)
