"""gateway/logs.py: JSON lines written by the writer thread, with what was true when they were logged."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import configure_logging


def test_lines_carry_the_message_the_extras_and_the_traceback_and_httpx_stays_quiet(
        capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    quiet = [logging.getLogger(name) for name in ("asyncio", "httpx", "httpcore")]
    saved = (root.handlers[:], root.level, [logger.level for logger in quiet],
             logging.getLogger("uvicorn.access").disabled)
    writer = configure_logging("info")
    try:
        log = logging.getLogger("gateway.test")
        labels = ["first"]
        log.info("hello %s", labels, extra={"request_id": "r-1", "status": 200})
        labels.append("changed after logging")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"request_id": "r-2"})
        log.debug("below the level")
        logging.getLogger("httpx").info("HTTP Request: GET http://vllm/metrics \"HTTP/1.1 200 OK\"")
    finally:
        writer.stop()
        root.handlers[:], level, quiet_levels, access_disabled = saved
        root.setLevel(level)
        for logger, quiet_level in zip(quiet, quiet_levels, strict=True):
            logger.setLevel(quiet_level)
        logging.getLogger("uvicorn.access").disabled = access_disabled
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first.pop("ts").endswith("+00:00")
    assert first == {"level": "info", "logger": "gateway.test", "msg": "hello ['first']",
                     "request_id": "r-1", "status": 200}
    assert (second["level"], second["msg"], second["request_id"]) == ("error", "failed", "r-2")
    assert second["exc"].startswith("Traceback (most recent call last):")
    assert second["exc"].endswith("ValueError: boom")
