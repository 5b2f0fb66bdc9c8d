"""The gateway against hostile clients: each probe of the open internet, with its exact answer.

In-process (httpx ASGI transport) against the synthetic upstream, which answers like vLLM.
"""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest

from gateway.app import create_app
from gateway.errors import error_body
from tests.gateway.support import ADMIN, MODEL, chat, fake_upstream_server, gateway_client, metric_value

pytestmark = pytest.mark.anyio


def invalid(message: str, param: str | None, code: str) -> dict:
    return error_body(400, message, param=param, code=code)


# --- bounded work per request -------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "payload", "error"), [
    ("/v1/chat/completions", chat(n=1000, max_tokens=1),
     invalid("'n' is 1000; this gateway allows 1 to 4.", "n", "invalid_value")),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "best_of": 50, "max_tokens": 1},
     invalid("'best_of' is 50; this gateway allows 1 to 4.", "best_of", "invalid_value")),
    ("/v1/chat/completions", chat(best_of=2),
     invalid("Unrecognized request argument supplied: best_of", "best_of", "unknown_parameter")),
    ("/v1/chat/completions", chat(chat_template="{{ 'x' * 10**9 }}"),
     invalid("Unrecognized request argument supplied: chat_template", "chat_template", "unknown_parameter")),
    ("/v1/chat/completions", chat(logprobs=True, top_logprobs=20),
     invalid("'top_logprobs' is 20; this gateway allows 0 to 5.", "top_logprobs", "invalid_value")),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 20},
     invalid("'logprobs' is 20; this gateway allows 0 to 5.", "logprobs", "invalid_value")),
    ("/v1/completions", {"model": MODEL, "prompt": ["x"] * 17},
     invalid("Too many prompts: 17 > 16.", "prompt", "too_many_prompts")),
    ("/v1/chat/completions", chat(ignore_eos=True),
     invalid("'ignore_eos' is not allowed by this gateway.", "ignore_eos", "invalid_value")),
    ("/v1/chat/completions", chat(min_tokens=100000),
     invalid("'min_tokens' is 100000; this gateway allows 0 to 256.", "min_tokens", "invalid_value")),
    ("/v1/chat/completions", chat(stop=["a", "b", "c", "d", "e"]),
     invalid("'stop' allows at most 4 sequences.", "stop", "invalid_value")),
    ("/v1/chat/completions",
     chat(tools=[{"type": "function", "function": {"name": f"f{i}"}} for i in range(33)]),
     invalid("'tools' must be an array of at most 32.", "tools", "invalid_value")),
    ("/v1/chat/completions", chat(tools=[{"type": "function", "function": {"name": "f" * 65}}]),
     invalid("'tools[0].function.name' is longer than 64 characters.", "tools[0].function.name",
             "name_too_long")),
    ("/v1/chat/completions", chat(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"description": "x" * 40000}}}]),
     invalid("'tools' and 'response_format' exceed 32000 characters.", "tools", "tools_too_large")),
    ("/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": "hi", "name": "n" * 65}]},
     invalid("'messages[0].name' is longer than 64 characters.", "messages[0].name", "name_too_long")),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "g" * 100, "arguments": "{}"}}]}]},
     invalid("'messages[0].tool_calls[0].function.name' is longer than 64 characters.",
             "messages[0].tool_calls[0].function.name", "name_too_long")),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}]}]},
     invalid("'messages[0].content[0]' must be a text part {\"type\": \"text\", \"text\": str}.",
             "messages[0].content[0]", "invalid_type")),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi", "extra": 1}]},
     invalid("Unrecognized argument supplied: messages[0].extra", "messages[0].extra", "unknown_parameter")),
    ("/v1/chat/completions", chat(n="3"), invalid("'n' must be an integer.", "n", "invalid_type")),
    ("/v1/chat/completions", chat(temperature="hot"),
     invalid("'temperature' must be a number.", "temperature", "invalid_type")),
    ("/v1/chat/completions", {"model": MODEL, "messages": "hello"},
     invalid("'messages' must be a non-empty array.", "messages", "invalid_type")),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "root", "content": "x"}]},
     invalid("'messages[0].role' must be one of assistant, developer, system, tool, user.",
             "messages[0].role", "invalid_value")),
    ("/v1/completions", {"model": MODEL, "prompt": {"text": "x"}},
     invalid("'prompt' must be a string, an array of strings, or token ids.", "prompt", "invalid_type")),
])
async def test_requests_asking_for_unbounded_work_are_400_naming_the_field(client, path, payload, error):
    response = await client.post(path, json=payload)
    assert (response.status_code, response.json()) == (400, error)


async def test_allowed_extras_pass_through(client):
    response = await client.post("/v1/chat/completions", json=chat(
        max_tokens=2, n=4, temperature=0.5, top_p=0.9, seed=7, stop=["x"], top_k=5, min_tokens=1,
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        tool_choice="auto", user="user-1"))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "t0 t1 "


async def test_the_rate_limit_charges_the_work_asked_for_not_the_request_count(make_settings):
    # burst 200 tokens: "Hello" costs 2 + n x max_tokens
    settings = make_settings(rate_limit_per_second=1, rate_limit_burst=200, trusted_hops=1)
    greedy = {"X-Forwarded-For": "198.51.100.1"}
    async with gateway_client(settings) as c:
        big = await c.post("/v1/chat/completions", json=chat(n=4, max_tokens=40), headers=greedy)  # 162
        again = await c.post("/v1/chat/completions", json=chat(n=4, max_tokens=40), headers=greedy)
        # 32 of the 38 left
        small = await c.post("/v1/chat/completions", json=chat(max_tokens=30), headers=greedy)
        other = await c.post("/v1/chat/completions", json=chat(n=4, max_tokens=40),
                             headers={"X-Forwarded-For": "198.51.100.2"})
    assert big.status_code == 200
    assert (again.status_code, again.headers["retry-after"]) == (429, "124")  # 162 wanted, 38 left, 1/s
    assert again.json()["error"]["code"] == "rate_limit_exceeded"
    assert small.status_code == 200
    assert other.status_code == 200


async def test_one_client_cannot_take_every_in_flight_slot(make_settings):
    with fake_upstream_server(tokens=50, interval=0.02) as slow:
        settings = make_settings(upstream_url=slow.url, max_in_flight=6, max_in_flight_per_client=3,
                                 hold_max_requests=2,
                                 trusted_hops=1, rate_limit_per_second=1000, rate_limit_burst=100_000)
        async with gateway_client(settings) as c:
            greedy: list[httpx.Response] = []

            async def hog() -> None:
                greedy.append(await c.post("/v1/chat/completions", json=chat(stream=True, max_tokens=50),
                                           headers={"X-Forwarded-For": "198.51.100.66"}))

            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(hog)
                await anyio.sleep(0.3)
                refused = await c.post("/v1/chat/completions", json=chat(max_tokens=1),
                                       headers={"X-Forwarded-For": "198.51.100.66"})
                other = await c.post("/v1/chat/completions", json=chat(max_tokens=1),
                                     headers={"X-Forwarded-For": "203.0.113.50"})
            metrics = (await c.get("/metrics")).text
    assert refused.status_code == 429
    assert refused.json() == error_body(
        429, "This client already has 3 requests in flight; retry when one ends.", code="rate_limit_exceeded")
    assert other.status_code == 200
    assert [r.status_code for r in greedy] == [200, 200, 200]
    assert metric_value(metrics, "gateway_shed_requests_total", {"reason": "client_in_flight"}) == 1
    # every slot was given back
    assert c.app.state.services.rate_limiter.slots.held("198.51.100.66") == 0


async def test_a_non_streamed_answer_over_the_cap_is_refused_not_buffered(make_settings):
    settings = make_settings(max_response_bytes=65536, max_tokens=50000)
    async with gateway_client(settings) as c:
        huge = await c.post("/v1/chat/completions", json=chat(max_tokens=20000))
        fits = await c.post("/v1/chat/completions", json=chat(max_tokens=100))
    assert huge.status_code == 502
    assert huge.json() == error_body(
        502, "The model server's answer is larger than this gateway's limit of 65536 bytes; ask for fewer "
             "or shorter completions, or stream.", code="response_too_large")
    assert fits.status_code == 200
    assert fits.headers["content-length"] == str(len(fits.content))
    assert fits.json()["usage"]["completion_tokens"] == 100


async def test_the_default_max_tokens_fits_the_model_servers_context(make_settings):
    with fake_upstream_server(tokens=8, interval=0, max_model_len=300) as upstream:
        settings = make_settings(upstream_url=upstream.url, max_tokens=1024, model_max_len=4096)
        async with gateway_client(settings) as c:
            response = await c.post("/v1/chat/completions", json=chat("Hello"))
            explicit = await c.post("/v1/chat/completions", json=chat("Hello", max_tokens=5))
            context = c.app.state.services.model_context
    # 300 - (5 bytes + 8 per message + 16 for the template) = 271
    assert response.json()["usage"]["completion_tokens"] == 271
    assert explicit.json()["usage"]["completion_tokens"] == 5
    assert context.cached == 300


async def test_models_show_the_served_name_only(client):
    response = await client.get("/v1/models")
    assert response.json() == {"object": "list", "data": [
        {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 512}]}
    assert "s3://" not in response.text


# --- malformed input is a 4xx, never a 500 ------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("body", "message"), [
    (DEEP, "The JSON body is nested deeper than 64 levels."),
    (b'{"model": "m", "messages": ' + b"[" * 70 + b"]" * 70 + b"}",
     "The JSON body is nested deeper than 64 levels."),
    (b'{"model": "fake-model", "messages": [{"role": "user", "content": "\\ud800"}]}',
     "The JSON body contains a lone surrogate escape (\\ud800-\\udfff)."),
    (b'{"model": "fake-model", "\\udfff": 1}',
     "The JSON body contains a lone surrogate escape (\\ud800-\\udfff)."),
    ('{"model": "fake-model", "messages": "é"}'.encode("latin-1"),
     "We could not parse the JSON body of your request."),
    (b"\xff\xfe\x00", "We could not parse the JSON body of your request."),
    (b"", "We could not parse the JSON body of your request."),
])
async def test_malformed_openai_bodies_are_400(client, body, message):
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", content=body,
                                 headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (400, invalid(message, None, "invalid_json"))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("body", [b"[]", b"null", b"42", b'"text"'])
async def test_json_that_is_not_an_object_is_400(client, body):
    response = await client.post("/v1/completions", content=body)
    assert (response.status_code, response.json()) == (
        400, invalid("The request body must be a JSON object.", None, "invalid_json"))


@pytest.mark.parametrize(("body", "message"), [
    (DEEP, "The JSON body is nested deeper than 64 levels."),
    (b'{"rating": 5, "company": "\\ud800"}',
     "The JSON body contains a lone surrogate escape (\\ud800-\\udfff)."),
    (b'{"rating": 5, "feedback": "\xc3\x28"}', "We could not parse the JSON body of your request."),
])
async def test_malformed_audience_bodies_are_422_naming_the_body(client, body, message):
    for path, headers in (("/api/survey", {}), ("/api/questions", {}), ("/api/admin/draw", ADMIN)):
        response = await client.post(path, content=body,
                                     headers={"content-type": "application/json", **headers})
        assert (response.status_code, response.json()) == (422, error_body(
            422, f"body: {message}", code="validation_error", param="body", fields={"body": message})), path


async def test_a_crash_is_a_500_in_the_answer_the_metrics_and_the_access_log(client, caplog):
    async def boom() -> None:
        raise RuntimeError("a bug")

    client.app.add_api_route("/boom", boom)
    with caplog.at_level("INFO", logger="gateway.access"):
        response = await client.get("/boom", headers={"X-Request-ID": "crash-1"})
    metrics = (await client.get("/metrics")).text
    assert (response.status_code, response.json()) == (500, error_body(
        500, "The gateway failed to handle the request.", code="internal_error"))
    assert response.headers["x-request-id"] == "crash-1"
    assert metric_value(metrics, "gateway_requests_total", {"route": "/boom", "status": "500"}) == 1
    access = [r for r in caplog.records if r.name == "gateway.access" and r.getMessage() == "request"]
    assert [(r.request_id, r.status) for r in access if r.request_id == "crash-1"] == [("crash-1", 500)]
    crash = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert crash[0].exc_info[0] is RuntimeError


# --- identifiers matched whole; X-Forwarded-For read across its lines -----------------------------------

async def test_identifiers_with_a_trailing_newline_are_refused(client):
    ticket = await client.get("/api/winner", params={"ticket": "0" * 24 + "\n"})
    session = await client.get("/api/winner", params={"ticket": "0" * 24, "session": "talk-1\n"})
    new_session = await client.post("/api/admin/session", json={"session_id": "talk-1\n"}, headers=ADMIN)
    assert ticket.status_code == 422
    assert ticket.json()["error"]["fields"] == {
        "ticket": "must be the 24-character ticket returned by /api/survey"}
    assert session.status_code == 422
    assert session.json()["error"]["fields"] == {"session": "is not a session id"}
    assert new_session.status_code == 422
    assert list(new_session.json()["error"]["fields"]) == ["session_id"]


async def test_a_request_id_with_a_trailing_newline_is_replaced(make_settings):
    app = create_app(make_settings())
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/healthz", "raw_path": b"/healthz", "query_string": b"",
             "root_path": "", "headers": [(b"x-request-id", b"abc\n")], "client": ("203.0.113.9", 1),
             "server": ("gateway", 80)}
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 200
    assert headers[b"x-request-id"] != b"abc\n"
    assert len(headers[b"x-request-id"]) == 32


async def test_a_second_x_forwarded_for_line_does_not_escape_the_rate_limit(make_settings):
    settings = make_settings(rate_limit_per_second=0.5, rate_limit_burst=10, trusted_hops=1)
    async with gateway_client(settings) as c:
        first = await c.post("/v1/chat/completions", json=chat(max_tokens=8),
                             headers={"X-Forwarded-For": "198.51.100.1"})
        # the client's own line first, the ALB's appended line last
        spoofed = await c.post("/v1/chat/completions", json=chat(max_tokens=8), headers=[
            ("X-Forwarded-For", "192.0.2.77"), ("X-Forwarded-For", "198.51.100.1")])
    assert first.status_code == 200
    assert spoofed.status_code == 429


# --- the admin door ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("token", "reason"), [
    (None, "GATEWAY_ADMIN_TOKEN is not set"),
    ("", "GATEWAY_ADMIN_TOKEN is not set"),
    ("short-token", "GATEWAY_ADMIN_TOKEN has 11 characters, fewer than 32"),
])
async def test_a_missing_or_short_admin_token_disables_the_admin_endpoints(make_settings, caplog, token,
                                                                           reason):
    with caplog.at_level("WARNING", logger="gateway"):
        async with gateway_client(make_settings(admin_token=token)) as c:
            empty_bearer = await c.post("/api/admin/mode", json={"mode": "survey"},
                                        headers={"Authorization": "Bearer "})
            with_token = await c.post("/api/admin/mode", json={"mode": "survey"},
                                      headers={"Authorization": f"Bearer {token}"})
    for response in (empty_bearer, with_token):
        assert (response.status_code, response.json()) == (503, error_body(
            503, f"The admin API is disabled: {reason}.", code="admin_disabled"))
    logged = [r for r in caplog.records if r.getMessage() == "admin endpoints disabled"]
    assert [r.reason for r in logged] == [reason]


async def test_failed_admin_attempts_are_limited_per_client(make_settings):
    settings = make_settings(trusted_hops=1, admin_failures_burst=3, admin_failures_per_minute=1)
    attacker = {"X-Forwarded-For": "192.0.2.66"}
    async with gateway_client(settings) as c:
        failures = [await c.post("/api/admin/mode", json={"mode": "quiz"},
                                 headers={**attacker, "Authorization": f"Bearer guess-{i}"})
                    for i in range(3)]
        empty = await c.post("/api/admin/mode", json={"mode": "quiz"},
                             headers={**attacker, "Authorization": "Bearer "})
        locked_out = await c.post("/api/admin/mode", json={"mode": "quiz"}, headers={**attacker, **ADMIN})
        presenter = await c.post("/api/admin/mode", json={"mode": "quiz"},
                                 headers={"X-Forwarded-For": "198.51.100.7", **ADMIN})
    assert [r.status_code for r in failures] == [401, 401, 401]
    assert failures[0].headers["www-authenticate"] == "Bearer"
    assert empty.status_code == 429
    assert locked_out.status_code == 429
    assert locked_out.json() == error_body(
        429, "Too many failed admin attempts from this client; retry after the delay in Retry-After.",
        code="rate_limit_exceeded")
    assert locked_out.headers["retry-after"] == "60"
    assert presenter.status_code == 200


# --- the audience -------------------------------------------------------------------------------------------

async def test_one_prize_draw_entry_per_browser_and_session(client):
    first = await client.post("/api/survey", json={"rating": 5})
    cookie = first.headers["set-cookie"]
    again = await client.post("/api/survey", json={"rating": 1, "feedback": "another try"})
    with_new_key = await client.post("/api/survey", json={"rating": 2}, headers={"Idempotency-Key": "new"})
    assert first.status_code == 201
    assert cookie.startswith("gw_entrant=")
    assert "; Path=/api; Max-Age=2592000; HttpOnly; SameSite=Strict" in cookie
    assert (again.status_code, again.json()) == (200, first.json())
    assert (with_new_key.status_code, with_new_key.json()) == (200, first.json())


async def test_a_forged_cookie_is_a_new_entrant_and_entries_per_address_are_capped(make_settings):
    settings = make_settings(survey_entries_per_address=2, trusted_hops=1)
    address = {"X-Forwarded-For": "192.0.2.10"}
    async with gateway_client(settings) as c:
        tickets = []
        for _ in range(2):
            c.cookies.clear()
            entered = await c.post("/api/survey", json={"rating": 3}, headers=address)
            tickets.append(entered.json()["ticket"])
        entrant = c.cookies.get("gw_entrant")
        c.cookies.clear()
        c.cookies.set("gw_entrant", "0" * 32 + "." + "0" * 32)  # unsigned: not an entrant
        forged = await c.post("/api/survey", json={"rating": 3}, headers=address)
        c.cookies.clear()
        c.cookies.set("gw_entrant", entrant)
        returning = await c.post("/api/survey", json={"rating": 3}, headers=address)
        c.cookies.clear()
        elsewhere = await c.post("/api/survey", json={"rating": 3}, headers={"X-Forwarded-For": "192.0.2.11"})
    assert len(set(tickets)) == 2
    assert (forged.status_code, forged.json()) == (429, error_body(
        429, "This address has entered the draw 2 times in this session.", code="entries_exceeded"))
    assert (returning.status_code, returning.json()["ticket"]) == (200, tickets[1])
    assert elsewhere.status_code == 201


async def test_winner_lookups_are_rate_limited_per_client(make_settings):
    settings = make_settings(lookup_rate_per_second=0.1, lookup_burst=3, trusted_hops=1)
    async with gateway_client(settings) as c:
        answers = [await c.get("/api/winner", params={"ticket": f"{i:024x}"},
                               headers={"X-Forwarded-For": "192.0.2.5"}) for i in range(4)]
        other = await c.get("/api/winner", params={"ticket": "0" * 24},
                            headers={"X-Forwarded-For": "192.0.2.6"})
    assert [r.status_code for r in answers] == [404, 404, 404, 429]
    assert answers[3].headers["retry-after"] == "10"
    assert other.status_code == 404


async def test_bodies_are_still_parsed_as_json_by_the_audience_routes(client):
    response = await client.post("/api/survey", content=json.dumps({"rating": 4}).encode(),
                                 headers={"content-type": "application/json"})
    assert response.status_code == 201
