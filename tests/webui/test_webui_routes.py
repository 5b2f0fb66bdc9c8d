"""The UI routes over real HTTP: pages and assets with the security headers, the page files' own rules
(no inline script or style, every input labelled, only listed assets), the admin QR code and figures."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from xml.etree import ElementTree

import httpx
import pytest
import segno

from gateway.routers.ui import ASSETS, CONTENT_SECURITY_POLICY, PAGES, upstream_gauges
from gateway.settings import STATIC_DIR
from gateway.testing.servers import free_port, serve_in_thread
from tests.webui.support import (
    ADMIN_TOKEN,
    PUBLIC_URL,
    Gateway,
    ScriptedModel,
    gateway_settings,
    running_gateway,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXPECTED_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    with serve_in_thread(ScriptedModel(["unused"])) as server:
        yield server.url


@pytest.fixture(scope="module")
def gateway(model: str) -> Iterator[Gateway]:
    # Nothing here touches S3: the endpoint is a closed port.
    settings = gateway_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", bucket="unused",
                                region="us-east-1", upstream_url=model, model="scripted-model",
                                upstream_metrics_poll_seconds=0)
    with running_gateway(settings) as running:
        yield running


def test_csp_is_the_documented_policy() -> None:
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@pytest.mark.parametrize(("path", "content_type"), [
    *[(path, "text/html; charset=utf-8") for path in PAGES],
    *[(f"/static/{name}", media_type) for name, media_type in ASSETS.items()],
])
def test_pages_and_assets_carry_security_headers(gateway: Gateway, path: str, content_type: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers[name] == value, name
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/static/settings.py", "/static/..%2Fsettings.py", "/static/index.html"])
def test_only_listed_assets_are_served(gateway: Gateway, path: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


class PageAudit(HTMLParser):
    """Collects what the CSP and accessibility rules care about in one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script_text = ""
        self.handlers: list[str] = []
        self.style_attributes: list[str] = []
        self.style_elements = 0
        self.stylesheets: list[str] = []
        self.controls: list[dict[str, str | None]] = []
        self.label_targets: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.handlers += [f"{tag}[{name}]" for name in attributes if name.startswith("on")]
        if "style" in attributes:
            self.style_attributes.append(tag)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        elif tag == "style":
            self.style_elements += 1
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes.get("href") or "")
        elif tag == "label" and attributes.get("for"):
            self.label_targets.add(attributes["for"] or "")
        elif tag in ("input", "textarea", "select"):
            self.controls.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script_text += data.strip()


@pytest.mark.parametrize("name", sorted(PAGES.values()))
def test_pages_have_no_inline_code_and_label_every_input(name: str) -> None:
    audit = PageAudit()
    audit.feed((STATIC_DIR / name).read_text(encoding="utf-8"))
    assert audit.scripts, "a page without its module"
    for script in audit.scripts:
        assert script.get("type") == "module"
        assert (script.get("src") or "").removeprefix("/static/") in ASSETS
    assert audit.inline_script_text == ""
    assert audit.handlers == []
    assert audit.style_attributes == []
    assert audit.style_elements == 0
    assert audit.stylesheets == ["/static/app.css"]
    unlabelled = [control.get("id") for control in audit.controls
                  if control.get("id") not in audit.label_targets]
    assert unlabelled == []
    assert len(audit.controls) >= 2


def test_modules_import_only_listed_assets() -> None:
    for name in ASSETS:
        if not name.endswith(".js"):
            continue
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        imported = re.findall(r'^import .* from "([^"]+)";$', text, flags=re.MULTILINE)
        assert all(target.removeprefix("./") in ASSETS for target in imported), (name, imported)
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, name


def test_every_listed_asset_exists() -> None:
    assert sorted(path.name for path in STATIC_DIR.iterdir() if not path.name.startswith(".")) == sorted(
        [*ASSETS, *PAGES.values()])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}])
@pytest.mark.parametrize("path", ["/api/admin/qr.svg", "/api/admin/live"])
def test_admin_endpoints_need_the_token(gateway: Gateway, path: str, headers: dict[str, str]) -> None:
    response = httpx.get(gateway.url + path, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_admin_token"
    assert response.headers["www-authenticate"] == "Bearer"


def test_qr_code_is_an_svg_of_the_public_url(gateway: Gateway) -> None:
    response = httpx.get(gateway.url + "/api/admin/qr.svg", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    root = ElementTree.fromstring(response.content)
    svg = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{svg}svg"
    assert root.findtext(f"{svg}title") == PUBLIC_URL
    qr = segno.make(PUBLIC_URL, error="m")
    assert (int(root.get("width", "0")), int(root.get("height", "0"))) == qr.symbol_size(scale=8, border=4)
    stroked = [path.get("d", "") for path in root.iter(f"{svg}path") if path.get("stroke") == "#000"]
    assert len(stroked) == 1
    expected = {(column + 4, row + 4) for row, line in enumerate(qr.matrix)
                for column, dark in enumerate(line) if dark}
    assert dark_modules(stroked[0]) == expected


def dark_modules(path: str) -> set[tuple[int, int]]:
    """The modules a segno SVG path paints: ``M x y`` / ``m dx dy`` move, ``h n`` paints n modules."""
    x = y = 0.0
    cells: set[tuple[int, int]] = set()
    for command, first, second in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:
            cells.update((int(x) + step, int(y)) for step in range(int(float(first))))
            x += float(first)
    return cells


def test_live_figures_read_the_model_server(gateway: Gateway) -> None:
    for _ in range(2):
        assert httpx.get(gateway.url + "/").status_code == 200
    deadline = time.monotonic() + 5
    while True:
        figures = httpx.get(gateway.url + "/api/admin/live", headers=AUTH).json()
        if figures["gateway"]["requests_total"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    replica = {"url": gateway.settings.upstream_url, "ready": True, "reachable": True, "error": None,
               "running": 0.0, "waiting": 0.0, "kv_cache_usage": None}
    assert figures["upstream"] == {"reachable": True, "error": None, "running": 0.0, "waiting": 0.0,
                                   "ready_replicas": 1, "replicas": [replica]}
    assert figures["hold"] == {"held": 0, "max_requests": gateway.settings.hold_max_requests}
    assert figures["gateway"]["in_flight"] == 0
    assert figures["gateway"]["max_in_flight"] == gateway.settings.max_in_flight
    assert figures["gateway"]["shed_queue_waiting"] == gateway.settings.shed_queue_waiting
    # Replica counts are the scaling view's (Prometheus), not guesses of this gateway's.
    assert "replicas" not in figures


def test_live_figures_say_when_the_model_server_is_unreachable(model: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = gateway_settings(s3_endpoint_url=closed, bucket="unused", region="us-east-1",
                                upstream_url=closed, model="m", upstream_metrics_poll_seconds=0)
    with running_gateway(settings) as gateway:
        figures = httpx.get(gateway.url + "/api/admin/live", headers=AUTH).json()
    upstream = figures["upstream"]
    assert (upstream["reachable"], upstream["running"], upstream["waiting"]) == (False, None, None)
    assert upstream["error"].startswith("UpstreamConnectError: cannot connect to 127.0.0.1")


def test_upstream_gauges_sum_over_models_and_ignore_other_families() -> None:
    text = (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="a"} 3.0\n'
        'vllm:num_requests_running{engine="0",model_name="b"} 1.0\n'
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0",model_name="a"} 7.0\n'
        "# HELP vllm:num_requests_waiting_by_reason Requests waiting, by reason.\n"
        "# TYPE vllm:num_requests_waiting_by_reason gauge\n"
        'vllm:num_requests_waiting_by_reason{reason="capacity"} 99.0\n'
        "# TYPE vllm:prompt_tokens counter\n"
        "vllm:prompt_tokens_total 12.0\n"
    )
    assert upstream_gauges(text) == {"vllm:num_requests_running": 4.0, "vllm:num_requests_waiting": 7.0}
