"""Unit tests of gateway/limits.py and the relay's pure helpers."""

from __future__ import annotations

import json

import pytest

from gateway.errors import ApiError
from gateway.limits import Admission, ClientSlots, TokenBuckets, client_address, work_tokens
from gateway.metrics import GatewayMetrics
from gateway.model_info import REFRESH_SECONDS, ModelContext, context_length, public_models
from gateway.relay import events_end
from gateway.replicas import parse_waiting
from gateway.settings import Settings
from gateway.upstream import upstream_http_error


def scope(peer: str = "10.0.0.9", forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"client": (peer, 1234), "headers": headers}


@pytest.mark.parametrize(("forwarded", "hops", "expected"), [
    (None, 0, "10.0.0.9"),
    ("198.51.100.1", 0, "10.0.0.9"),  # no trusted proxy: the header is the client's word, ignored
    ("198.51.100.1", 1, "198.51.100.1"),
    ("6.6.6.6, 198.51.100.1", 1, "198.51.100.1"),  # spoofed entry on the left is skipped
    ("6.6.6.6, 198.51.100.1, 192.0.2.10", 2, "198.51.100.1"),
    ("198.51.100.1", 2, "198.51.100.1"),  # fewer entries than hops: the leftmost
    (" , ", 1, "10.0.0.9"),
])
def test_client_address_takes_the_entry_trusted_hops_from_the_right(forwarded, hops, expected):
    assert client_address(scope(forwarded=forwarded), hops) == expected


def test_token_bucket_grants_burst_then_refills_at_rate():
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, max_clients=10, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)


def test_token_buckets_evict_the_least_recently_seen_client():
    buckets = TokenBuckets(rate=1.0, burst=1, max_clients=2, clock=lambda: 0.0)
    buckets.take("a")
    buckets.take("b")
    buckets.take("c")
    assert len(buckets) == 2
    assert buckets.take("a") == 0.0  # evicted, so a fresh bucket


def test_admission_caps_in_flight_and_sheds_on_upstream_queue():
    metrics = GatewayMetrics()
    admission = Admission(max_in_flight=2, shed_queue_waiting=5, retry_after=3, metrics=metrics)
    admission.acquire()
    admission.acquire()
    with pytest.raises(ApiError) as refused:
        admission.acquire()
    assert (refused.value.status_code, refused.value.code, refused.value.headers) == (
        429, "overloaded", {"Retry-After": "3"})
    admission.release()
    admission.upstream_waiting = 6
    with pytest.raises(ApiError) as shed:
        admission.acquire()
    assert (shed.value.status_code, shed.value.code) == (429, "upstream_queue_full")
    admission.upstream_waiting = 5
    admission.acquire()
    admission.release()
    admission.release()
    assert admission.in_flight == 0
    assert metrics.registry.get_sample_value("gateway_in_flight_requests") == 0
    assert metrics.registry.get_sample_value("gateway_shed_requests_total", {"reason": "in_flight_cap"}) == 1
    assert metrics.registry.get_sample_value("gateway_shed_requests_total", {"reason": "upstream_queue"}) == 1


@pytest.mark.parametrize(("data", "end"), [
    (b"data: 1\n\n", 9),
    (b"data: 1\n\ndata: 2", 9),
    (b"data: 1\n\ndata: 2\n\n", 18),
    (b"data: 1", 0),
    (b"data: 1\r\n\r\ndata: 2", 11),
])
def test_events_end_finds_the_last_complete_event(data, end):
    assert events_end(data) == end


def test_upstream_errors_keep_vllm_message_and_map_status():
    error = upstream_http_error(400, b'{"error": {"message": "too long", "type": "BadRequestError", '
                                     b'"param": "max_tokens", "code": 400}}')
    assert error.body() == {"error": {"message": "too long", "type": "invalid_request_error",
                                      "param": "max_tokens", "code": None}}
    assert error.status_code == 400
    assert upstream_http_error(500, b"boom").status_code == 502
    overloaded = upstream_http_error(503, b"{}")
    assert (overloaded.status_code, overloaded.headers) == (503, {"Retry-After": "1"})


def test_parse_waiting_sums_models_and_ignores_other_families():
    text = (
        "# HELP vllm:num_requests_waiting Waiting.\n# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="a"} 3.0\nvllm:num_requests_waiting{model_name="b"} 4.0\n'
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 9.0\n"
    )
    assert parse_waiting(text) == 7.0
    with pytest.raises(ValueError, match="not found"):
        parse_waiting("vllm:num_requests_running 1\n")


def test_client_address_reads_every_x_forwarded_for_line_in_order():
    lines = {"client": ("10.0.0.9", 1), "headers": [
        (b"x-forwarded-for", b"192.0.2.77"), (b"accept", b"*/*"),
        (b"x-forwarded-for", b"6.6.6.6, 198.51.100.1")]}
    assert client_address(lines, 1) == "198.51.100.1"
    assert client_address(lines, 2) == "6.6.6.6"
    assert client_address(lines, 3) == "192.0.2.77"


def test_token_buckets_charge_the_cost_and_cap_it_at_the_burst():
    now = [0.0]
    buckets = TokenBuckets(rate=10.0, burst=100, max_clients=10, clock=lambda: now[0])
    assert buckets.take("a", 60) == 0.0
    assert buckets.take("a", 60) == pytest.approx(2.0)  # 40 left, 20 more at 10 a second
    assert buckets.wait("a") == 0.0
    now[0] += 6.0
    assert buckets.take("a", 5000) == 0.0  # charged as the whole bucket: 100
    assert buckets.wait("a") == pytest.approx(0.1)


def test_client_slots_cap_each_client_and_are_given_back():
    metrics = GatewayMetrics()
    slots = ClientSlots(per_client=2, retry_after=1, metrics=metrics)
    slots.acquire("a")
    slots.acquire("a")
    slots.acquire("b")
    with pytest.raises(ApiError) as refused:
        slots.acquire("a")
    assert (refused.value.status_code, refused.value.code) == (429, "rate_limit_exceeded")
    slots.release("a")
    slots.acquire("a")
    for key in ("a", "a", "b"):
        slots.release(key)
    assert (slots.held("a"), slots.held("b")) == (0, 0)


def test_work_tokens_count_the_prompt_and_every_completion():
    assert work_tokens(prompt_chars=400, completions=4, max_tokens=256) == 100 + 1024
    assert work_tokens(prompt_chars=1, completions=1, max_tokens=1) == 2


def models_answer(length: object) -> dict:
    return {"object": "list", "data": [{"id": "m", "root": "/models/m", "max_model_len": length}]}


class ScriptedModelServer:
    """The upstream as ModelContext sees it: scripted answers to its reads (an ApiError: no server)."""

    def __init__(self, *answers: tuple[int, object] | ApiError) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, bool]] = []

    async def read(self, method: str, path: str, limit: int, *, unserved: bool = True) -> tuple[int, bytes]:
        self.calls.append((path, unserved))
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, ApiError):
            raise answer
        status, body = answer
        return status, json.dumps(body).encode()


@pytest.mark.anyio
async def test_model_context_is_read_cached_and_falls_back_to_the_setting():
    server = ScriptedModelServer((200, models_answer(512)), (503, {}), (200, models_answer(2048)))
    now = [0.0]
    context = ModelContext(server, Settings(model="m", model_max_len=4096), clock=lambda: now[0])
    assert await context.length() == 512
    assert await context.length() == 512  # cached: no second call
    now[0] += REFRESH_SECONDS + 1
    assert await context.length() == 512  # the refresh failed: the last known length stays
    assert await context.length() == 512  # and it is not asked again before RETRY_SECONDS
    now[0] += 6
    assert await context.length() == 2048
    # The gateway's own reads never count as requests no model server could take (the wake signal).
    assert server.calls == [("/v1/models", False)] * 3


@pytest.mark.anyio
async def test_model_context_without_an_answer_is_the_setting():
    unavailable = ApiError(503, "The model server is unavailable.", code="upstream_unavailable")
    server = ScriptedModelServer(unavailable)
    context = ModelContext(server, Settings(model="m", model_max_len=1000))
    assert await context.length() == 1000
    assert context_length(models_answer(True), "m") is None
    assert context_length(models_answer("512"), "m") is None
    assert context_length({"data": "x"}, "m") is None
    assert public_models(models_answer(512), frozenset({"m"})) == {
        "object": "list", "data": [{"id": "m", "max_model_len": 512}]}
