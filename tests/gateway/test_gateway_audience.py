"""The audience API against the synthetic upstream and a real S3-compatible server (moto's server mode)."""

from __future__ import annotations

import json
import uuid

import pytest

from gateway.storage import draw_winners, tickets_digest
from tests.gateway.support import ADMIN, BUCKET, MODEL, gateway_client

pytestmark = pytest.mark.anyio


def s3_json(s3, key: str) -> dict:
    return json.loads(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def s3_keys(s3, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def test_config_creates_the_shared_state_once(client, gateway_s3):
    first = await client.get("/api/config")
    again = await client.get("/api/config")
    assert first.status_code == 200
    body = first.json()
    assert body["mode"] == "quiz"
    assert body["public_url"] == "http://127.0.0.1:8080"
    assert body["limits"] == {"question_max_chars": 500, "company_max_chars": 200, "feedback_max_chars": 2000}
    assert again.json()["session_id"] == body["session_id"]
    prefix = client.app.state.settings.s3_prefix
    state = s3_json(gateway_s3, f"{prefix}/state/current.json")
    assert (state["mode"], state["session_id"]) == ("quiz", body["session_id"])
    assert s3_json(gateway_s3, f"{prefix}/sessions/{body['session_id']}/session.json")["ended_at"] is None


async def test_survey_is_stored_before_201_and_idempotency_key_prevents_duplicates(client, gateway_s3):
    payload = {"rating": 4, "company": "  ACME  ", "feedback": "Clear talk"}
    headers = {"Idempotency-Key": "phone-42-submit-1"}
    created = await client.post("/api/survey", json=payload, headers=headers)
    retried = await client.post("/api/survey", json=payload, headers=headers)
    client.cookies.clear()  # another browser
    other = await client.post("/api/survey", json=payload)
    assert created.status_code == 201
    record = created.json()
    assert set(record) == {"ticket", "session_id", "rating", "company", "feedback", "created_at"}
    assert (record["rating"], record["company"], record["feedback"]) == (4, "ACME", "Clear talk")
    assert retried.status_code == 200
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json() == record
    assert other.status_code == 201
    assert other.json()["ticket"] != record["ticket"]
    prefix = f"{client.app.state.settings.s3_prefix}/sessions/{record['session_id']}/survey/"
    assert s3_keys(gateway_s3, prefix) == sorted(
        [f"{prefix}{record['ticket']}.json", f"{prefix}{other.json()['ticket']}.json"])
    assert s3_json(gateway_s3, f"{prefix}{record['ticket']}.json") == record


@pytest.mark.parametrize(("payload", "fields"), [
    ({"rating": 0, "company": "A", "feedback": ""}, {"rating": "Input should be greater than or equal to 1"}),
    ({"rating": 6}, {"rating": "Input should be less than or equal to 5"}),
    ({"rating": "5"}, {"rating": "Input should be a valid integer"}),
    ({"company": "A"}, {"rating": "Field required"}),
    ({"rating": 3, "company": 7}, {"company": "Input should be a valid string"}),
    ({"rating": 3, "company": "x" * 201}, {"company": "must be at most 200 characters"}),
    ({"rating": 3, "feedback": "x" * 2001}, {"feedback": "must be at most 2000 characters"}),
])
async def test_survey_validation_is_422_with_a_message_per_field(client, payload, fields):
    response = await client.post("/api/survey", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"] == fields
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "validation_error"
    assert error["param"] == next(iter(fields))
    assert error["message"] == "; ".join(f"{k}: {v}" for k, v in fields.items())


async def test_question_is_answered_and_stored(client, gateway_s3):
    response = await client.post("/api/questions", json={"question": "What is KEDA?"},
                                 headers={"Idempotency-Key": "q-1"})
    assert response.status_code == 201
    record = response.json()
    assert record["question"] == "What is KEDA?"
    assert record["answer"] == "".join(f"t{i} " for i in range(256))  # bounded by question_max_tokens
    assert record["finish_reason"] == "length"
    assert record["model"] == MODEL
    prefix = f"{client.app.state.settings.s3_prefix}/sessions/{record['session_id']}/questions/"
    assert s3_json(gateway_s3, f"{prefix}{record['id']}.json") == record
    replay = await client.post("/api/questions", json={"question": "What is KEDA?"},
                               headers={"Idempotency-Key": "q-1"})
    assert (replay.status_code, replay.json()) == (200, record)


async def test_question_stream_sends_deltas_then_done_after_storing(make_settings, gateway_s3):
    async with gateway_client(make_settings(question_max_tokens=3)) as c:
        response = await c.post("/api/questions", json={"question": "Why Spot?", "stream": True})
        prefix = c.app.state.settings.s3_prefix
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = [json.loads(e.removeprefix("data: ")) for e in response.text.split("\n\n") if e]
    assert events[:3] == [{"type": "delta", "text": "t0 "}, {"type": "delta", "text": "t1 "},
                          {"type": "delta", "text": "t2 "}]
    done = events[3]
    assert done["type"] == "done"
    assert done["answer"] == "t0 t1 t2 "
    assert len(events) == 4
    stored = s3_json(gateway_s3, f"{prefix}/sessions/{done['session_id']}/questions/{done['id']}.json")
    assert stored == {k: v for k, v in done.items() if k != "type"}


@pytest.mark.parametrize(("payload", "fields"), [
    ({"question": "   "}, {"question": "must not be empty"}),
    ({"question": "x" * 501}, {"question": "must be at most 500 characters"}),
    ({}, {"question": "Field required"}),
])
async def test_question_validation_is_422(client, payload, fields):
    response = await client.post("/api/questions", json=payload)
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == fields


async def test_admin_endpoints_need_the_bearer_token(client):
    missing = await client.post("/api/admin/mode", json={"mode": "survey"})
    wrong = await client.post("/api/admin/mode", json={"mode": "survey"},
                              headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": {"message": "A valid admin bearer token is required.",
                                             "type": "authentication_error", "param": None,
                                             "code": "invalid_admin_token"}}


async def test_admin_disabled_without_a_token(make_settings):
    async with gateway_client(make_settings(admin_token=None)) as c:
        response = await c.post("/api/admin/mode", json={"mode": "survey"}, headers=ADMIN)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "admin_disabled"


async def test_mode_and_session_changes_are_shared_through_s3(make_settings, gateway_s3):
    settings = make_settings()
    async with gateway_client(settings) as admin, gateway_client(settings) as replica:
        before = (await replica.get("/api/config")).json()
        mode = await admin.post("/api/admin/mode", json={"mode": "survey"}, headers=ADMIN)
        assert mode.status_code == 200
        assert mode.json()["mode"] == "survey"
        assert (await replica.get("/api/config")).json()["mode"] == "survey"
        invalid = await admin.post("/api/admin/mode", json={"mode": "poll"}, headers=ADMIN)
        assert invalid.status_code == 422
        assert invalid.json()["error"]["param"] == "mode"
        created = await admin.post("/api/admin/session", json={"session_id": "talk-2"}, headers=ADMIN)
        assert created.status_code == 201
        assert created.json()["session_id"] == "talk-2"
        assert created.json()["previous_session_id"] == before["session_id"]
        assert created.json()["mode"] == "survey"
        after = (await replica.get("/api/config")).json()
        duplicate = await admin.post("/api/admin/session", json={"session_id": "talk-2"}, headers=ADMIN)
    assert after["session_id"] == "talk-2"
    assert duplicate.status_code == 409
    archived = s3_json(gateway_s3, f"{settings.s3_prefix}/sessions/{before['session_id']}/session.json")
    assert archived["ended_at"] is not None


async def test_draw_is_reproducible_stored_and_checkable_by_ticket(client, gateway_s3):
    tickets = []
    for rating in (1, 2, 3, 4, 5):
        client.cookies.clear()  # five browsers
        response = await client.post("/api/survey", json={"rating": rating, "company": "c", "feedback": "f"})
        tickets.append(response.json()["ticket"])
    not_drawn = await client.get("/api/winner", params={"ticket": tickets[0]})
    assert not_drawn.json()["drawn"] is False
    draw = await client.post("/api/admin/draw", json={"count": 2, "seed": 42}, headers=ADMIN)
    assert draw.status_code == 201
    record = draw.json()
    assert record["winners"] == draw_winners(tickets, 2, "42")
    assert (record["seed"], record["count"], record["eligible"]) == ("42", 2, 5)
    assert record["tickets_sha256"] == tickets_digest(tickets)
    again = await client.post("/api/admin/draw", json={"count": 2, "seed": "42"}, headers=ADMIN)
    assert again.json()["winners"] == record["winners"]
    assert again.json()["id"] != record["id"]
    stored = s3_json(gateway_s3, f"{client.app.state.settings.s3_prefix}/sessions/{record['session_id']}"
                                 f"/draws/{record['id']}.json")
    assert stored == record
    winner = record["winners"][0]
    loser = next(t for t in tickets if t not in record["winners"] and t not in again.json()["winners"])
    won = await client.get("/api/winner", params={"ticket": winner})
    lost = await client.get("/api/winner", params={"ticket": loser})
    assert won.json() == {"ticket": winner, "session_id": record["session_id"], "drawn": True, "winner": True,
                          "draw_id": record["id"], "rank": 1}
    assert lost.json()["winner"] is False
    assert lost.json()["drawn"] is True
    unknown = await client.get("/api/winner", params={"ticket": "0" * 24})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "ticket_not_found"
    malformed = await client.get("/api/winner", params={"ticket": "../etc"})
    assert malformed.status_code == 422
    assert malformed.json()["error"]["fields"] == {
        "ticket": "must be the 24-character ticket returned by /api/survey"}


async def test_stats_count_per_session_with_average_rating(client):
    for rating in (2, 5, 5):
        client.cookies.clear()  # three browsers
        await client.post("/api/survey", json={"rating": rating})
    await client.post("/api/questions", json={"question": "Q?"})
    stats = await client.get("/api/stats")
    assert stats.status_code == 200
    body = stats.json()
    assert body["mode"] == "quiz"
    assert body["sessions"] == [{"session_id": body["session_id"], "questions": 1, "surveys": 3,
                                 "average_rating": 4.0, "ratings": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 2}}]


async def test_s3_down_means_503_with_retry_after_and_nothing_acknowledged(make_settings, s3_fault):
    # state cached, so the requests get as far as writing their record
    settings = make_settings(s3_attempts=2, s3_connect_timeout=0.5, state_cache_seconds=600,
                             question_max_tokens=3)
    async with gateway_client(settings) as c:
        session = (await c.get("/api/config")).json()["session_id"]
        s3_fault.stop()
        survey = await c.post("/api/survey", json={"rating": 5}, headers={"Idempotency-Key": "k"})
        question = await c.post("/api/questions", json={"question": "Q?"})
        streamed = await c.post("/api/questions", json={"question": "Q?", "stream": True})
        ready = await c.get("/readyz")
        status = await c.get("/status")
        metrics = (await c.get("/metrics")).text
        s3_fault.start()
        retried = await c.post("/api/survey", json={"rating": 5}, headers={"Idempotency-Key": "k"})
    expected = {"error": {"message": "Storage is unavailable; nothing was recorded. Retry shortly.",
                          "type": "server_error", "param": None, "code": "storage_unavailable"}}
    assert (survey.status_code, survey.headers["retry-after"], survey.json()) == (503, "1", expected)
    assert (question.status_code, question.json()) == (503, expected)
    # the streamed answer already started: the failure is the last event, and no "done"
    events = [json.loads(e.removeprefix("data: ")) for e in streamed.text.split("\n\n") if e]
    assert events[-1] == {"type": "error", **expected}
    assert all(event["type"] == "delta" for event in events[:-1])
    # An S3 outage is the status page's news, not a reason to leave the load balancer.
    assert ready.status_code == 200
    assert status.json()["s3"] == {"ok": False, "error": "unreachable: StorageUnavailable"}
    assert 'gateway_s3_write_failures_total{kind="survey"} 1.0' in metrics
    assert retried.status_code == 201
    assert retried.json()["session_id"] == session


async def test_records_from_two_sessions_never_mix(make_settings):
    settings = make_settings()
    async with gateway_client(settings) as c:
        first = (await c.post("/api/survey", json={"rating": 1}, headers={"Idempotency-Key": "same"})).json()
        await c.post("/api/admin/session", json={"session_id": f"s-{uuid.uuid4().hex[:6]}"}, headers=ADMIN)
        second = (await c.post("/api/survey", json={"rating": 1}, headers={"Idempotency-Key": "same"})).json()
    assert first["session_id"] != second["session_id"]
    assert first["ticket"] != second["ticket"]
