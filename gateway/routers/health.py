"""Liveness (the process answers) and readiness (vLLM and S3 reachable)."""

from __future__ import annotations

import anyio
import httpx
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
    services = request.app.state.services
    checks: dict[str, str] = {}

    async def upstream() -> None:
        try:
            response = await services.http.get("/health", timeout=CHECK_TIMEOUT)
            checks["upstream"] = "ok" if response.status_code == 200 else f"status {response.status_code}"
        except httpx.HTTPError as exc:
            checks["upstream"] = f"unreachable: {type(exc).__name__}"

    async def s3() -> None:
        try:
            with anyio.fail_after(CHECK_TIMEOUT * services.settings.s3_attempts + 1):
                await services.records.check()
            checks["s3"] = "ok"
        except (StorageUnavailable, TimeoutError) as exc:
            checks["s3"] = f"unreachable: {type(exc).__name__}"

    async with anyio.create_task_group() as group:
        group.start_soon(upstream)
        group.start_soon(s3)
    failing = sorted(name for name, result in checks.items() if result != "ok")
    if failing:
        body = error_body(503, f"not ready: {', '.join(failing)}", code="not_ready")
        body["checks"] = checks
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
