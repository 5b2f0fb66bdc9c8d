"""Fixtures for the web UI tests: Debian's Chromium driven by Playwright, and gateways (in a thread of
this process) wired to the session's real S3-compatible server and, where a test needs it, real vLLM."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.webui.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    Gateway,
    gateway_settings,
    running_gateway,
)

GatewayFactory = Callable[..., AbstractContextManager[Gateway]]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium (never a browser Playwright downloads), shared by the session."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: apt-get install chromium (scripts/test installs it)"
        if os.environ.get("STACK_ALLOW_MISSING") == "1":
            pytest.skip(f"{message} (skipped: STACK_ALLOW_MISSING=1)")
        pytest.fail(message, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageProblems:
    """What the page complained about: console errors, uncaught exceptions and CSP violations."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []

    @property
    def csp_violations(self) -> list[str]:
        return [text for text in self.console_errors if "Content Security Policy" in text]


@pytest.fixture
def phone(chromium: Any) -> Iterator[tuple[Any, PageProblems]]:
    """A fresh phone-sized page (360 by 780 CSS pixels, touch) and the problems it reports."""
    context = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = PageProblems()
    page.on("console", lambda message: problems.console_errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.page_errors.append(str(error)))
    try:
        yield page, problems
    finally:
        context.close()


@pytest.fixture(scope="session")
def s3_credentials(s3_server: Any) -> Iterator[Any]:
    """The AWS variables of the session S3 server in this process's environment (the gateway's boto3
    client runs in a thread here and reads them)."""
    saved = {name: os.environ.get(name) for name in s3_server.env()}
    os.environ.update(s3_server.env())
    try:
        yield s3_server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def start_gateway(s3_credentials: Any) -> GatewayFactory:
    """``with start_gateway(upstream_url=..., model=..., **settings) as server:`` a gateway on the
    session S3 server (``gateway.url``, ``gateway.settings``, ``gateway.admin(...)``)."""

    def start(*, upstream_url: str, model: str, **overrides: Any) -> AbstractContextManager[Gateway]:
        settings = gateway_settings(s3_endpoint_url=s3_credentials.endpoint_url, bucket=s3_credentials.bucket,
                                    region=s3_credentials.region, upstream_url=upstream_url, model=model,
                                    **overrides)
        return running_gateway(settings)

    return start
