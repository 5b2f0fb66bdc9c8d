"""The gateway's exposure in the rendered overlays: what the Ingress routes, and its required Secret."""

from __future__ import annotations

import pytest
from rendered_manifests import Rendered
from starlette.routing import Match

from gateway.app import create_app
from gateway.settings import Settings

OVERLAYS = ("overlays/dev", "overlays/prod")
PUBLIC_PATHS = ("/", "/admin", "/static/app.css", "/api/config", "/api/survey", "/api/admin/mode",
                "/v1/chat/completions", "/v1/completions", "/v1/models")
INTERNAL_PATHS = ("/metrics", "/openapi.json", "/docs", "/redoc", "/healthz", "/readyz", "/Metrics",
                  "/v1/models/x", "/apiary", "/static-extra", "/admin/x", "/v1", "/%6Detrics")


def matches(rule: dict, path: str) -> bool:
    """Kubernetes Ingress path semantics: Exact is the whole path, case-sensitive; Prefix matches whole
    path elements (``/api`` matches ``/api`` and ``/api/x``, not ``/apiary``)."""
    if rule["pathType"] == "Exact":
        return path == rule["path"]
    prefix = rule["path"].rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


def ingress_paths(result: Rendered) -> list[dict]:
    rules = result.one("Ingress", "gateway")["spec"]["rules"]
    return [path for rule in rules for path in rule["http"]["paths"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_routes_only_the_public_paths(rendered: dict[str, Rendered], overlay: str) -> None:
    paths = ingress_paths(rendered[overlay])
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/", "Exact"), ("/admin", "Exact"), ("/static", "Prefix"), ("/api", "Prefix"),
        ("/v1/chat/completions", "Exact"), ("/v1/completions", "Exact"), ("/v1/models", "Exact")]
    assert all(p["backend"] == {"service": {"name": "gateway", "port": {"name": "http"}}} for p in paths)
    for path in PUBLIC_PATHS:
        assert any(matches(rule, path) for rule in paths), path
    for path in INTERNAL_PATHS:
        assert not any(matches(rule, path) for rule in paths), path


def test_every_public_path_is_a_gateway_route() -> None:
    """The Ingress lists nothing the gateway does not serve (a renamed route would leave a dead rule)."""
    app = create_app(Settings())
    for path in PUBLIC_PATHS:
        scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
        assert any(route.matches(scope)[0] != Match.NONE for route in app.router.routes), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admin_secret_is_required(rendered: dict[str, Rendered], overlay: str) -> None:
    container = rendered[overlay].one("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    secrets = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in container["env"]}
    assert secrets == {
        "GATEWAY_ADMIN_TOKEN": {"name": "gateway-admin", "key": "token"},
        "GATEWAY_CLIENT_COOKIE_SECRET": {"name": "gateway-admin", "key": "cookie-secret"},
    }
