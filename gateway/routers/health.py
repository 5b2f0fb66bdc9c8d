"""Liveness (the process answers), readiness (this gateway can take traffic) and dependency status.

Readiness never depends on vLLM or S3. The ALB (target type ip) sends traffic only to Ready pods: a
gateway that reported vLLM at zero replicas as not ready would get no request, so it could neither hold
them nor raise the `unserved` signal that wakes vLLM (base/keda); one S3 blip would take the whole site
off the load balancer. How the dependencies are doing is ``/status`` (and ``/metrics``, and the admin
page), which always answers 200 with what it found.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.errors import error_body
from gateway.storage import StorageUnavailable

router = APIRouter()

CHECK_TIMEOUT = 2.0


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """200 while this gateway can take traffic: started (settings valid, clients built) and not draining."""
    state = request.app.state
    if getattr(state, "services", None) is None:
        return JSONResponse(error_body(503, "not ready: starting", code="not_ready"), status_code=503)
    if state.draining:
        return JSONResponse(error_body(503, "not ready: draining", code="not_ready"), status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/status", include_in_schema=False)
async def status(request: Request) -> JSONResponse:
    """The dependencies as this gateway sees them: each vLLM replica, the hold, S3. Always 200."""
    services = request.app.state.services
    upstream = services.upstream
    replicas = upstream.replicas
    s3: dict[str, Any]
    try:
        with anyio.fail_after(CHECK_TIMEOUT * services.settings.s3_attempts + 1):
            await services.records.check()
        s3 = {"ok": True, "error": None}
    except (StorageUnavailable, TimeoutError) as exc:
        s3 = {"ok": False, "error": f"unreachable: {type(exc).__name__}"}
    members = [{"url": replica.url, "ready": replica.ready, "outstanding": replica.outstanding,
                "waiting": replica.waiting} for replica in replicas.members.values()]
    ready = sum(1 for member in members if member["ready"])
    body = {
        "status": "ok" if ready and s3["ok"] else "degraded",
        "upstream": {
            "ready_replicas": ready,
            "discovery": services.settings.upstream_discovery_dns or None,
            "discovered": replicas.discovered,
            "replicas": members,
            "waiting": replicas.waiting,
        },
        "hold": {"held": len(upstream.hold), "max_requests": upstream.hold.max_requests,
                 "timeout_seconds": upstream.hold.timeout},
        "s3": s3,
        "draining": request.app.state.draining,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
