"""The web UI in Debian's Chromium at phone size, against running gateways wired to the real local S3 server
and (for the quiz and admin figures) the real vLLM. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from gateway.testing.fake_upstream import FakeConfig, FakeUpstream
from gateway.testing.servers import free_port, serve_in_thread
from tests.webui.conftest import GatewayFactory, PageProblems
from tests.webui.support import ADMIN_TOKEN, PHONE, PUBLIC_URL, Gateway, ScriptedModel, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.s3]

Phone = tuple[Any, PageProblems]
XSS_PARTS = ['Sure: <img src=x onerror="window.__xss=1;alert(1)">', " and <scr",
             "ipt>window.__xss=2;alert(2)", "</script> & <b>bold</b>"]


def assert_page_clean(page: Any, problems: PageProblems) -> None:
    """No CSP violation, no uncaught error, and nothing wider than the phone screen."""
    assert problems.csp_violations == []
    assert problems.page_errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def survey_keys(s3: Any, gateway: Gateway, session_id: str) -> list[str]:
    prefix = gateway.key("sessions", session_id, "survey") + "/"
    listing = s3.list_objects_v2(Bucket=gateway.settings.s3_bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def read_record(s3: Any, gateway: Gateway, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=gateway.settings.s3_bucket, Key=key)["Body"].read())


def open_page(page: Any, gateway: Gateway, mode: str) -> str:
    """Set the mode, open the audience page, wait until it shows that mode; the session id."""
    state = gateway.admin("POST", "/api/admin/mode", {"mode": mode}).json()
    page.goto(gateway.url + "/")
    page.wait_for_selector(f"#{mode}:not([hidden])")
    return state["session_id"]


@pytest.fixture(scope="module")
def closed_upstream() -> str:
    """A loopback URL nothing listens on: the model server is down."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def model_gateway(start_gateway: GatewayFactory, vllm_server: Any) -> Iterator[Gateway]:
    with start_gateway(upstream_url=vllm_server.base_url, model=vllm_server.model,
                       question_max_tokens=64) as gateway:
        yield gateway


@pytest.mark.vllm
def test_question_streams_the_answer_token_by_token(model_gateway: Gateway, phone: Phone,
                                                    s3_server: Any) -> None:
    page, problems = phone
    session_id = open_page(page, model_gateway, "quiz")
    page.evaluate("""() => {
        window.__lengths = [];
        const answer = document.getElementById("answer");
        new MutationObserver(() => window.__lengths.push(answer.textContent.length))
            .observe(answer, {childList: true});
    }""")
    page.focus("#question")
    page.keyboard.type("What does KEDA scale on?")
    page.keyboard.press("Enter")  # Enter sends; no click
    expect(page.locator("#answer-status")).to_have_text("Answered.", timeout=60_000)
    lengths = page.evaluate("window.__lengths")
    text_nodes = page.evaluate("document.getElementById('answer').childNodes.length")
    answer = page.inner_text("#answer")
    screenshot(page, "quiz-answer")
    # The answer arrived in several pieces, each shown as it came: the text grew step by step.
    assert len(lengths) >= 3 and lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    assert text_nodes >= 3
    assert page.input_value("#question") == ""
    assert page.inner_text("#asked") == "What does KEDA scale on?"
    # What the page shows is what S3 holds.
    s3 = s3_server.client()
    prefix = model_gateway.key("sessions", session_id, "questions") + "/"
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=model_gateway.settings.s3_bucket,
                                                        Prefix=prefix).get("Contents", [])]
    assert len(keys) == 1
    record = read_record(s3, model_gateway, keys[0])
    assert record["question"] == "What does KEDA scale on?"
    assert record["answer"].strip() == answer.strip() and answer.strip()
    assert_page_clean(page, problems)


def test_model_text_is_shown_as_text_never_as_html(start_gateway: GatewayFactory, phone: Phone) -> None:
    page, problems = phone
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with serve_in_thread(ScriptedModel(XSS_PARTS)) as model, \
            start_gateway(upstream_url=model.url, model="scripted-model") as gateway:
        open_page(page, gateway, "quiz")
        page.fill("#question", "Say something dangerous")
        page.click("#ask")
        expect(page.locator("#answer-status")).to_have_text("Answered.")
        page.wait_for_timeout(300)  # give an injected handler the time to run, were there one
        screenshot(page, "quiz-model-text-is-text")
        assert page.evaluate("document.getElementById('answer').textContent") == "".join(XSS_PARTS)
        assert page.evaluate("document.getElementById('answer').children.length") == 0
        assert page.evaluate("document.querySelectorAll('img[src=x], b, main script').length") == 0
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert dialogs == []
        assert page.get_by_text('<img src=x onerror="window.__xss=1;alert(1)">', exact=False).is_visible()
        assert_page_clean(page, problems)


def test_a_failure_mid_answer_keeps_the_partial_answer_and_offers_a_retry(start_gateway: GatewayFactory,
                                                                          phone: Phone) -> None:
    page, problems = phone
    with serve_in_thread(ScriptedModel(["The queue ", "is the signal"], error="engine died")) as model, \
            start_gateway(upstream_url=model.url, model="scripted-model") as gateway:
        open_page(page, gateway, "quiz")
        page.fill("#question", "What does KEDA watch?")
        page.press("#question", "Enter")
        page.wait_for_selector("#question-problem:not([hidden])")
        assert page.inner_text("#question-problem .problem-message") == (
            "The model server had a problem answering. Please retry.")
        assert page.evaluate("document.getElementById('answer').textContent") == "The queue is the signal"
        assert page.inner_text("#answer-status") == "The answer stopped early."
        assert page.is_enabled("#question-problem .retry")  # no Retry-After: ready at once
        assert page.input_value("#question") == "What does KEDA watch?"
        screenshot(page, "quiz-failed-mid-answer")
        assert_page_clean(page, problems)


@pytest.mark.vllm
def test_survey_lands_in_s3_once_and_its_ticket_can_win(model_gateway: Gateway, phone: Phone,
                                                        s3_server: Any) -> None:
    page, problems = phone
    session_id = open_page(page, model_gateway, "survey")
    screenshot(page, "survey-form")
    page.click("#send-survey")
    assert page.inner_text("#rating-error") == "Choose a rating from 1 to 5."
    assert page.evaluate("document.activeElement.id") == "rating-1"
    screenshot(page, "survey-validation")
    assert survey_keys(s3_server.client(), model_gateway, session_id) == []

    page.click("label[for=rating-4]")
    page.fill("#company", "  ACME <b>Corp</b>  ")
    page.fill("#feedback", "Clear talk.\nMore on Spot, please.")
    page.dblclick("#send-survey")  # a double tap sends once
    page.wait_for_selector("#survey-done:not([hidden])")
    ticket = page.inner_text("#ticket")
    screenshot(page, "survey-done")

    s3 = s3_server.client()
    key = model_gateway.key("sessions", session_id, "survey", f"{ticket}.json")
    assert survey_keys(s3, model_gateway, session_id) == [key]
    record = read_record(s3, model_gateway, key)
    assert set(record) == {"ticket", "session_id", "rating", "company", "feedback", "created_at"}
    assert record == {"ticket": ticket, "session_id": session_id, "rating": 4, "company": "ACME <b>Corp</b>",
                      "feedback": "Clear talk.\nMore on Spot, please.", "created_at": record["created_at"]}
    assert json.loads(page.evaluate("localStorage.getItem('survey:ticket')")) == {
        "ticket": ticket, "session_id": session_id}

    page.click("#check-winner")
    expect(page.locator("#winner-result")).to_have_text(re.compile("^The draw"))
    model_gateway.admin("POST", "/api/admin/draw", {"count": 1, "seed": "webui"})
    page.click("#check-winner")
    expect(page.locator("#winner-result")).to_have_text(re.compile("^You won"))
    assert page.inner_text("#winner-result") == f"You won (prize 1)! Show this screen with ticket {ticket}."
    screenshot(page, "survey-winner")
    # A reload keeps the confirmation: the ticket is remembered for this session.
    page.reload()
    page.wait_for_selector("#survey-done:not([hidden])")
    assert page.inner_text("#ticket") == ticket
    assert_page_clean(page, problems)


def test_survey_can_be_completed_with_the_keyboard_alone(start_gateway: GatewayFactory, phone: Phone,
                                                         closed_upstream: str, s3_server: Any) -> None:
    page, problems = phone
    with start_gateway(upstream_url=closed_upstream, model="m", upstream_metrics_poll_seconds=0) as gateway:
        session_id = open_page(page, gateway, "survey")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "rating-1"
        for _ in range(3):
            page.keyboard.press("ArrowRight")  # arrows move through the radio group and pick
        assert page.is_checked("#rating-4")
        screenshot(page, "survey-keyboard-focus")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "company"
        page.keyboard.type("Keyboard Ltd")
        page.keyboard.press("Enter")
        page.wait_for_selector("#survey-done:not([hidden])")
        ticket = page.inner_text("#ticket")
        key = gateway.key("sessions", session_id, "survey", f"{ticket}.json")
        record = read_record(s3_server.client(), gateway, key)
        assert (record["rating"], record["company"], record["feedback"]) == (4, "Keyboard Ltd", "")
        assert_page_clean(page, problems)


def test_server_field_errors_show_beside_the_field_and_keep_the_input(
        start_gateway: GatewayFactory, phone: Phone, closed_upstream: str) -> None:
    page, problems = phone
    with start_gateway(upstream_url=closed_upstream, model="m", upstream_metrics_poll_seconds=0,
                       company_max_chars=10) as gateway:
        open_page(page, gateway, "survey")
        # An older page with a larger limit than the server's: only the server can say no.
        page.evaluate("document.getElementById('company').removeAttribute('maxlength')")
        page.click("label[for=rating-2]")
        page.fill("#company", "A company name longer than ten")
        page.fill("#feedback", "kept")
        page.press("#company", "Enter")  # Enter in a text field submits the form
        page.wait_for_selector("#company-error:not([hidden])")
        assert page.inner_text("#company-error") == "Company: must be at most 10 characters"
        assert page.get_attribute("#company", "aria-invalid") == "true"
        assert page.input_value("#company") == "A company name longer than ten"
        assert page.input_value("#feedback") == "kept"
        assert page.is_checked("#rating-2")
        screenshot(page, "survey-server-validation")
        assert_page_clean(page, problems)


@pytest.mark.vllm
def test_mode_switch_reaches_an_open_page_without_reload(model_gateway: Gateway, phone: Phone) -> None:
    page, problems = phone
    open_page(page, model_gateway, "quiz")
    page.evaluate("window.__sameDocument = true")
    model_gateway.admin("POST", "/api/admin/mode", {"mode": "survey"})
    page.wait_for_selector("#survey:not([hidden])", timeout=10_000)
    assert page.is_hidden("#quiz")
    assert page.inner_text("#title") == "Your feedback"
    model_gateway.admin("POST", "/api/admin/mode", {"mode": "quiz"})
    page.wait_for_selector("#quiz:not([hidden])", timeout=10_000)
    assert page.is_hidden("#survey")
    assert page.evaluate("window.__sameDocument") is True
    assert_page_clean(page, problems)


def test_rate_limited_survey_shows_a_countdown_then_retries(start_gateway: GatewayFactory, phone: Phone,
                                                            closed_upstream: str, s3_server: Any) -> None:
    page, problems = phone
    with start_gateway(upstream_url=closed_upstream, model="m", upstream_metrics_poll_seconds=0,
                       lookup_rate_per_second=0.34, lookup_burst=1) as gateway:
        session_id = open_page(page, gateway, "survey")
        # Someone on the same address just used the only token.
        assert httpx.post(gateway.url + "/api/survey", json={"rating": 1}).status_code == 201
        page.click("label[for=rating-5]")
        page.fill("#company", "Initech")
        page.click("#send-survey")
        page.wait_for_selector("#survey-problem:not([hidden])")
        assert page.inner_text("#survey-problem .problem-message") == (
            "You are going a little fast. Please wait a moment before trying again.")
        assert page.inner_text("#survey-problem .retry").startswith("Retry in ")
        assert page.is_disabled("#survey-problem .retry")
        screenshot(page, "survey-rate-limited")
        assert page.input_value("#company") == "Initech"
        assert json.loads(page.evaluate("sessionStorage.getItem('draft:survey')")) == {
            "rating": 5, "company": "Initech", "feedback": ""}
        # After Retry-After the page retries by itself, and the answer is stored.
        page.wait_for_selector("#survey-done:not([hidden])", timeout=15_000)
        ticket = page.inner_text("#ticket")
        keys = survey_keys(s3_server.client(), gateway, session_id)
        assert gateway.key("sessions", session_id, "survey", f"{ticket}.json") in keys and len(keys) == 2
        assert page.is_hidden("#survey-problem")
        assert_page_clean(page, problems)


def test_storage_outage_keeps_the_answer_and_the_retry_reuses_its_key(
        start_gateway: GatewayFactory, phone: Phone, closed_upstream: str, s3_fault: Any) -> None:
    page, problems = phone
    with start_gateway(upstream_url=closed_upstream, model="m", upstream_metrics_poll_seconds=0,
                       s3_read_timeout=1, s3_attempts=1, retry_after_seconds=3) as gateway:
        session_id = open_page(page, gateway, "survey")
        sent_keys: list[str | None] = []
        page.on("request", lambda request: sent_keys.append(request.headers.get("idempotency-key"))
                if request.url.endswith("/api/survey") else None)
        page.click("label[for=rating-3]")
        page.fill("#feedback", "Saved on the second try")
        s3_fault.pause()
        try:
            page.click("#send-survey")
            page.wait_for_selector("#survey-problem:not([hidden])")
            assert page.inner_text("#survey-problem .problem-message") == (
                "We could not save that just now; nothing was recorded. Please retry.")
            assert page.input_value("#feedback") == "Saved on the second try"
            assert page.is_checked("#rating-3")
            screenshot(page, "survey-storage-down")
        finally:
            s3_fault.resume()
        # The automatic retry after Retry-After sends the same submission with the same key.
        page.wait_for_selector("#survey-done:not([hidden])", timeout=20_000)
        ticket = page.inner_text("#ticket")
        assert len(sent_keys) >= 2 and len(set(sent_keys)) == 1 and sent_keys[0]
        # one record, the ticket shown: the retry landed on the first attempt's entrant
        assert survey_keys(s3_fault.client(), gateway, session_id) == [
            gateway.key("sessions", session_id, "survey", f"{ticket}.json")]
        problems.console_errors = [text for text in problems.console_errors if "503" not in text]
        assert_page_clean(page, problems)


def test_a_question_held_during_a_cold_start_says_so_then_gets_its_answer(start_gateway: GatewayFactory,
                                                                          phone: Phone) -> None:
    page, problems = phone
    loading = FakeUpstream(FakeConfig(model="m", interval=0.001))
    loading.loading = True
    with serve_in_thread(loading) as model, start_gateway(
            upstream_url=model.url, model="m", upstream_metrics_poll_seconds=0, upstream_probe_seconds=0.1,
            question_max_tokens=3) as gateway:
        open_page(page, gateway, "quiz")
        page.fill("#question", "Are you awake?")
        page.press("#question", "Enter")
        expect(page.locator("#answer-status")).to_have_text("The model is starting; your question is queued.")
        assert page.is_disabled("#ask")
        screenshot(page, "quiz-held-during-cold-start")
        loading.loading = False
        expect(page.locator("#answer-status")).to_have_text("Answered.")
        assert page.evaluate("document.getElementById('answer').textContent") == "t0 t1 t2 "
        assert list(loading.received) == ["Are you awake?"]
        assert_page_clean(page, problems)


def test_model_server_down_shows_a_retry_and_keeps_the_question(start_gateway: GatewayFactory, phone: Phone,
                                                                closed_upstream: str) -> None:
    page, problems = phone
    # The hold off: with it on, the question would wait for a model server (the test below).
    with start_gateway(upstream_url=closed_upstream, model="m", upstream_metrics_poll_seconds=0,
                       retry_after_seconds=30, hold_max_requests=0) as gateway:
        open_page(page, gateway, "quiz")
        page.fill("#question", "Is anyone there?")
        page.press("#question", "Enter")
        page.wait_for_selector("#question-problem:not([hidden])")
        assert page.inner_text("#question-problem .problem-message") == (
            "The model server is down or still starting. Please try again shortly.")
        assert page.inner_text("#question-problem .retry") in ("Retry in 30 s", "Retry in 29 s")
        assert page.input_value("#question") == "Is anyone there?"
        assert page.is_hidden("#exchange")
        screenshot(page, "quiz-model-down")
        # Nothing typed is lost, even across a reload.
        page.reload()
        page.wait_for_selector("#quiz:not([hidden])")
        assert page.input_value("#question") == "Is anyone there?"
        problems.console_errors = [text for text in problems.console_errors if "503" not in text]
        assert_page_clean(page, problems)


@pytest.mark.vllm
def test_admin_page_needs_the_token_then_shows_the_qr_code_and_live_figures(
        model_gateway: Gateway, phone: Phone) -> None:
    page, problems = phone
    page.goto(model_gateway.url + "/admin")
    assert page.is_hidden("#console")
    assert page.evaluate("document.activeElement.id") == "token"
    assert page.request.get(model_gateway.url + "/api/admin/qr.svg").status == 401
    page.fill("#token", "not-the-token")
    page.press("#token", "Enter")
    page.wait_for_selector("#token-error:not([hidden])")
    assert page.inner_text("#token-error") == "That token was not accepted."
    assert page.is_hidden("#console")
    screenshot(page, "admin-locked")

    page.fill("#token", ADMIN_TOKEN)
    page.press("#token", "Enter")
    page.wait_for_selector("#console:not([hidden])")
    page.wait_for_function("() => document.getElementById('qr').naturalWidth > 0")
    assert page.get_attribute("#qr", "src").startswith("data:image/svg+xml;base64,")
    expect(page.locator("#public-url")).to_have_text(PUBLIC_URL)
    expect(page.locator("#fig-running")).to_have_text("0")
    assert page.inner_text("#fig-waiting") == f"0 (shed above {model_gateway.settings.shed_queue_waiting})"
    # Replica counts come from Prometheus (the scaling view), which this gateway is not given.
    assert (page.inner_text("#fig-replicas-gateway"), page.inner_text("#fig-replicas-vllm")) == (
        "no data", "no data")
    assert page.inner_text("#scaling-status") == (
        "No figures: the scaling view is off: GATEWAY_PROMETHEUS_URL is not set.")
    assert page.inner_text("#fig-held") == f"0 of {model_gateway.settings.hold_max_requests}"
    assert page.evaluate("sessionStorage.getItem('admin:token')") == json.dumps(ADMIN_TOKEN)
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []

    page.click("#mode-survey")
    expect(page.locator("#current-mode")).to_have_text("survey")
    assert httpx.get(model_gateway.url + "/api/config").json()["mode"] == "survey"
    page.fill("#draw-count", "2")
    page.click("#draw-form button[type=submit]")
    page.wait_for_selector("#draw-result:not([hidden])")
    assert page.inner_text("#draw-summary").startswith("0 winner(s) from 0 ticket(s), seed ")
    screenshot(page, "admin")
    problems.console_errors = [text for text in problems.console_errors if "401" not in text]
    assert_page_clean(page, problems)
