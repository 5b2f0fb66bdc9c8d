"""Prometheus metrics, in a registry owned by one app instance (never the process-global default)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HOLD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 90, 120, 150, 180, 240, 300)
S3_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=r)
        self.in_flight = Gauge(
            "gateway_in_flight_requests", "Requests holding an upstream slot right now.", registry=r)
        self.time_to_first_token = Histogram(
            "gateway_time_to_first_token_seconds", "Request arrival to the first streamed upstream byte.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.request_duration = Histogram(
            "gateway_upstream_request_duration_seconds", "Request arrival to the last byte relayed.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Upstream failures, by kind.", ["kind"], registry=r)
        # One per request that found no ready model server (held or refused), and one more per second it
        # stays held: its rate is the number of requests waiting for a model server. At zero vLLM
        # replicas there is no vLLM metric at all, so KEDA's `unserved` trigger (base/keda) wakes vLLM
        # from zero on this.
        self.upstream_unavailable = Counter(
            "gateway_upstream_unavailable", "Requests that found no ready model server (held or refused), "
            "plus one per second held.", registry=r)
        self.held = Gauge(
            "gateway_held_requests", "Requests held now, waiting for a model server to become ready.",
            registry=r)
        self.hold_seconds = Histogram(
            "gateway_hold_seconds", "Time requests spent held waiting for a ready model server.",
            buckets=HOLD_BUCKETS, registry=r)
        self.hold_timeouts = Counter(
            "gateway_hold_timeouts", "Held requests answered 503 because no model server became ready in "
            "time.", registry=r)
        self.replicas = Gauge(
            "gateway_upstream_replicas", "Model server replicas known to this gateway, by state.", ["state"],
            registry=r)
        self.replica_requests = Counter(
            "gateway_upstream_replica_requests", "Requests sent to each model server replica.", ["replica"],
            registry=r)
        self.shed = Counter(
            "gateway_shed_requests", "Requests refused with 429, by reason.", ["reason"], registry=r)
        self.client_disconnects = Counter(
            "gateway_client_disconnects", "Clients that left before their response ended.", registry=r)
        self.upstream_waiting = Gauge(
            "gateway_upstream_requests_waiting", "vllm:num_requests_waiting summed over the ready replicas "
            "at the last poll (-1: unknown).", registry=r)
        self.upstream_waiting.set(-1)
        self.s3_write_duration = Histogram(
            "gateway_s3_write_seconds", "S3 PutObject latency, by record kind.", ["kind"],
            buckets=S3_BUCKETS, registry=r)
        self.s3_write_failures = Counter(
            "gateway_s3_write_failures", "S3 writes that failed after every attempt, by record kind.",
            ["kind"],
            registry=r)
