"""The audience web page (``/``), the admin page (``/admin``), their assets (``/static/<name>``), and the
two admin endpoints only the admin page uses: the QR code of the public URL and the live figures.

Every response here carries the UI's security headers. The pages are plain files: no inline script, no
inline style, no third-party origin, so the Content-Security-Policy can forbid all of them.
"""

from __future__ import annotations

import io
import math
from typing import Any

import anyio
import segno
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import ApiError
from gateway.http1 import UpstreamConnectError, UpstreamError
from gateway.replicas import Replica, read_metrics
from gateway.routers.admin import require_admin
from gateway.settings import Settings, SettingsDep

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Pages and assets change with each release and are tiny: always revalidate (FileResponse sends an ETag).
REVALIDATE = {"Cache-Control": "no-cache"}
# Anything carrying admin data must not be kept by the browser or a proxy.
NO_STORE = {"Cache-Control": "no-store"}

PAGES: dict[str, str] = {"/": "index.html", "/admin": "admin.html"}
# Every file the pages load, with its media type; anything else under /static is a 404.
ASSETS: dict[str, str] = {
    "app.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "audience.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "scaling.js": "text/javascript; charset=utf-8",
}
UPSTREAM_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
LIVE_METRICS_TIMEOUT = 2.0

router = APIRouter()
admin_router = APIRouter(prefix="/api/admin", dependencies=[Depends(require_admin)])


def _file(settings: Settings, name: str, media_type: str) -> FileResponse:
    path = settings.static_dir / name
    if not path.is_file():
        raise ApiError(404, f"{name} is not installed in {settings.static_dir}.", code="not_found")
    return FileResponse(path, media_type=media_type, headers={**SECURITY_HEADERS, **REVALIDATE})


@router.get("/", include_in_schema=False)
async def audience_page(settings: SettingsDep) -> FileResponse:
    return _file(settings, PAGES["/"], "text/html; charset=utf-8")


@router.get("/admin", include_in_schema=False)
async def admin_page(settings: SettingsDep) -> FileResponse:
    return _file(settings, PAGES["/admin"], "text/html; charset=utf-8")


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str, settings: SettingsDep) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, f"No asset named {name!r}.", code="not_found", param="name")
    return _file(settings, name, media_type)


def qr_svg(url: str) -> bytes:
    """The QR code of ``url`` as a standalone SVG (black on white, so it scans on any page colour)."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=8, border=4, dark="#000", light="#fff",
                                    title=url, svgclass="qr", lineclass=None)
    return buffer.getvalue()


@admin_router.get("/qr.svg", response_model=None)
async def qr_code(settings: SettingsDep) -> Response:
    return Response(qr_svg(settings.public_url), media_type="image/svg+xml",
                    headers={**SECURITY_HEADERS, **NO_STORE})


def upstream_gauges(metrics_text: str) -> dict[str, float]:
    """Each of ``UPSTREAM_GAUGES`` summed over its label sets (one per served model); absent ones left out."""
    # Only these families' lines go to the parser: vLLM's exposition is large.
    wanted = [line for line in metrics_text.splitlines() if any(name in line for name in UPSTREAM_GAUGES)]
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(wanted) + "\n"):
        if family.name in UPSTREAM_GAUGES:
            for sample in family.samples:
                if sample.name == family.name and not math.isnan(sample.value):
                    totals[family.name] = totals.get(family.name, 0.0) + sample.value
    return totals


def _counter_total(counter: Any) -> dict[str, float]:
    """A labelled counter's ``_total`` samples keyed by their label values joined with ' '."""
    totals: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[" ".join(sample.labels.values())] = sample.value
    return totals


async def _read_replica(replica: Replica) -> dict[str, Any]:
    try:
        gauges = upstream_gauges(await read_metrics(replica, LIVE_METRICS_TIMEOUT))
    except (UpstreamConnectError, UpstreamError, TimeoutError, ValueError) as exc:
        return {"url": replica.url, "ready": replica.ready, "reachable": False,
                "error": f"{type(exc).__name__}: {exc}".rstrip(": "),
                "running": None, "waiting": None, "kv_cache_usage": None}
    return {
        "url": replica.url,
        "ready": replica.ready,
        "reachable": True,
        "error": None,
        "running": gauges.get("vllm:num_requests_running"),
        "waiting": gauges.get("vllm:num_requests_waiting"),
        "kv_cache_usage": gauges.get("vllm:kv_cache_usage_perc"),
    }


async def _read_upstream(request: Request) -> dict[str, Any]:
    """Every replica's figures, read now, and their sums (None when no replica answered)."""
    replicas = request.app.state.services.upstream.replicas
    figures: list[dict[str, Any]] = []

    async def read(replica: Replica) -> None:
        figures.append(await _read_replica(replica))

    async with anyio.create_task_group() as group:
        for replica in list(replicas.members.values()):
            group.start_soon(read, replica)
    figures.sort(key=lambda figure: figure["url"])
    reached = [figure for figure in figures if figure["reachable"]]

    def total(name: str) -> float | None:
        values = [figure[name] for figure in reached if figure[name] is not None]
        return sum(values) if values else None

    unreached = [figure["error"] for figure in figures if not figure["reachable"]]
    return {
        "reachable": bool(reached),
        "error": unreached[0] if unreached else None,
        "running": total("running"),
        "waiting": total("waiting"),
        "ready_replicas": sum(1 for figure in figures if figure["ready"]),
        "replicas": figures,
    }


@admin_router.get("/live")
async def live(request: Request, settings: SettingsDep) -> JSONResponse:
    """Figures for the admin page: this gateway replica's load, its hold, and each vLLM replica it knows,
    read now from their /metrics.

    The gateway replica count is "unknown": one gateway replica does not see its peers.
    """
    admission = request.app.state.admission
    gateway_metrics = request.app.state.metrics
    upstream = request.app.state.services.upstream
    requests = _counter_total(gateway_metrics.requests)
    figures = await _read_upstream(request)
    body = {
        "gateway": {
            "in_flight": admission.in_flight,
            "max_in_flight": admission.max_in_flight,
            "requests_total": int(sum(requests.values())),
            "shed": {reason: int(count) for reason, count in _counter_total(gateway_metrics.shed).items()},
            "polled_upstream_waiting": admission.upstream_waiting,
            "shed_queue_waiting": admission.shed_queue_waiting,
        },
        "hold": {"held": len(upstream.hold), "max_requests": upstream.hold.max_requests},
        "upstream": figures,
    }
    return JSONResponse(body, headers=NO_STORE)


router.include_router(admin_router)
