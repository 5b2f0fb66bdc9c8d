"""Runs loadtest/audience.js under node with stand-ins for k6's modules (tests/manifests/k6_stub)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from rendered_manifests import REPO_ROOT

SCRIPT = REPO_ROOT / "loadtest" / "audience.js"
STUB_DIR = REPO_ROOT / "tests" / "manifests" / "k6_stub"
ITERATIONS = 400
BASE_URL = "https://llm.example.test"

# scripts/setup --test installs Debian's nodejs: there is no k6 binary on these machines.
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def k6_run() -> dict[str, Any]:
    assert NODE is not None, "node is missing: run scripts/setup --test"
    completed = subprocess.run(
        [
            NODE,
            "--import",
            str(STUB_DIR / "register.mjs"),
            str(STUB_DIR / "run.mjs"),
            str(SCRIPT),
            str(ITERATIONS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"K6_ENV": json.dumps({"BASE_URL": BASE_URL + "/"}), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_stages_ramp_to_the_audience_peak(k6_run: dict[str, Any]) -> None:
    assert k6_run["options"]["stages"] == [
        {"duration": "30s", "target": 20},
        {"duration": "1m", "target": 60},
        {"duration": "1m", "target": 150},
        {"duration": "3m", "target": 150},
        {"duration": "1m", "target": 30},
        {"duration": "30s", "target": 0},
    ]


def test_thresholds_cover_latency_and_errors(k6_run: dict[str, Any]) -> None:
    thresholds = k6_run["options"]["thresholds"]
    assert thresholds["http_req_failed"] == ["rate<0.02"]
    assert thresholds["http_req_duration"] == ["p(95)<20000"]
    assert thresholds["http_req_duration{kind:survey}"] == ["p(95)<1000"]


def test_requests_mix_quiz_survey_and_chat(k6_run: dict[str, Any]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for request in k6_run["requests"]:
        by_kind.setdefault(request["params"]["tags"]["kind"], []).append(request)
    assert set(by_kind) == {"question", "survey", "chat"}
    assert len(k6_run["requests"]) == ITERATIONS
    # 60 % questions, 10 % chat, 30 % survey, within sampling noise over 400 draws.
    assert 0.45 < len(by_kind["question"]) / ITERATIONS < 0.75
    assert 0.03 < len(by_kind["chat"]) / ITERATIONS < 0.2
    assert 0.18 < len(by_kind["survey"]) / ITERATIONS < 0.42

    for request in by_kind["question"]:
        assert request["url"] == f"{BASE_URL}/api/questions"
        assert set(request["body"]) == {"question"}
        assert request["body"]["question"]
    for request in by_kind["survey"]:
        assert request["url"] == f"{BASE_URL}/api/survey"
        assert set(request["body"]) == {"rating", "company", "feedback"}
        assert request["body"]["rating"] in {1, 2, 3, 4, 5}
    for request in by_kind["chat"]:
        assert request["url"] == f"{BASE_URL}/v1/chat/completions"
        assert request["body"]["model"] == "mistral-7b-instruct"
        assert request["body"]["max_tokens"] == 128
        assert request["body"]["messages"][0]["role"] == "user"
    assert all(r["params"]["headers"] == {"Content-Type": "application/json"} for r in k6_run["requests"])


def test_every_response_is_checked(k6_run: dict[str, Any]) -> None:
    names = {c["name"] for c in k6_run["checks"]}
    assert names == {"question accepted", "survey stored", "completion returned", "completion has a choice"}
    assert all(c["passed"] for c in k6_run["checks"])
