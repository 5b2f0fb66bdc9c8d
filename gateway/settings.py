"""Gateway settings, read from the environment (prefix ``GATEWAY_``).

Every field is documented in gateway/README.md; the Kubernetes manifests (base/gateway) set the same names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

STATIC_DIR = Path(__file__).parent / "static"
# A bearer token anyone on the internet may guess at: 32 characters of a random token are ~190 bits.
ADMIN_TOKEN_MIN_CHARS = 32


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    # Server
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # SIGTERM drain time for in-flight streams
    shutdown_timeout: float = Field(default=30.0, ge=0)
    # above the load balancer's idle timeout (60 s on an ALB)
    keep_alive_seconds: float = Field(default=75.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = False
    static_dir: Path = STATIC_DIR
    # What a client may make the server hold before the app sees a request (gateway/server.py)
    max_header_bytes: int = Field(default=65_536, ge=1024, description="request line and headers, in bytes")
    max_header_count: int = Field(default=100, ge=8)
    header_timeout: float = Field(default=10.0, gt=0, description="first byte to the end of the headers")
    body_timeout: float = Field(default=30.0, gt=0, description="end of the headers to the end of the body")

    # Upstream (the vLLM Service)
    upstream_url: str = "http://127.0.0.1:8000"
    # Replicas: the addresses of a headless Service's name (re-resolved every discovery interval, each at
    # upstream_url's port), or a fixed list of URLs; neither, or no address found: upstream_url alone.
    upstream_discovery_dns: str = ""
    upstream_replicas: Annotated[list[str], NoDecode] = Field(default_factory=list)
    upstream_discovery_seconds: float = Field(default=1.0, gt=0)
    upstream_probe_seconds: float = Field(default=0.5, gt=0, description="/health of replicas marked down")
    upstream_keepalive_seconds: float = Field(default=4.0, gt=0, description="below vLLM's (uvicorn's) 5 s")
    upstream_max_idle_connections: int = Field(default=256, ge=1, description="kept per replica")
    upstream_api_key: SecretStr | None = None
    model: str = "mistral-7b-awq"
    allowed_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    upstream_connect_timeout: float = Field(default=3.0, gt=0)
    upstream_connect_attempts: int = Field(default=3, ge=1, le=10)
    upstream_retry_backoff: float = Field(default=0.1, ge=0)
    upstream_first_token_timeout: float = Field(default=60.0, gt=0)
    upstream_idle_timeout: float = Field(default=30.0, gt=0)
    upstream_total_timeout: float = Field(default=300.0, gt=0)
    upstream_metrics_poll_seconds: float = Field(default=1.0, ge=0, description="0 disables queue shedding")
    # vLLM answers /metrics from the same event loop that streams tokens: while its engine is saturated
    # (when shedding matters) one answer can take seconds. A slow answer is still a current queue.
    upstream_metrics_timeout_seconds: float = Field(default=10.0, gt=0, description="one /metrics read")

    # Hold: requests wait while no model server is ready (a cold start), FIFO, bounded by count and time.
    hold_max_requests: int = Field(default=128, ge=0, description="0: no hold; below max_in_flight")
    # Covers the documented cold start (about 2 minutes, up to 180 s), and stays under the ALB's idle
    # timeout (300 s, base/gateway/ingress.yaml): a held non-streaming request sends nothing meanwhile.
    hold_timeout_seconds: float = Field(default=180.0, gt=0)
    # SSE comment lines to a held stream; well under the ALB's idle timeout and clients' read timeouts.
    hold_keepalive_seconds: float = Field(default=15.0, gt=0)

    # Admission and limits
    max_in_flight: int = Field(default=256, ge=1)
    shed_queue_waiting: int = Field(default=64, ge=0, description="shed while vLLM's waiting queue is above")
    retry_after_seconds: int = Field(default=1, ge=1)
    # Charged in tokens of work (prompt estimate + n x max_tokens), not in requests: gateway/limits.py
    rate_limit_per_second: float = Field(default=400.0, ge=0, description="tokens per client; 0 disables")
    rate_limit_burst: int = Field(default=16_384, ge=1, description="tokens")
    max_in_flight_per_client: int = Field(default=8, ge=1)
    rate_limit_max_clients: int = Field(default=100_000, ge=1)
    trusted_hops: int = Field(default=0, ge=0, description="proxies in front that append to X-Forwarded-For")
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_messages: int = Field(default=64, ge=1)
    max_message_chars: int = Field(default=32_000, ge=1)
    max_tokens: int = Field(default=1024, ge=1)
    max_tokens_policy: Literal["clamp", "reject"] = "clamp"
    # The model server's context when its /v1/models answer (max_model_len) cannot be read
    model_max_len: int = Field(default=4096, ge=16)
    max_n: int = Field(default=4, ge=1, description="n and best_of")
    max_logprobs: int = Field(default=5, ge=0, description="logprobs (legacy) and top_logprobs")
    max_prompts: int = Field(default=16, ge=1, description="list prompts of /v1/completions")
    max_min_tokens: int = Field(default=256, ge=0)
    allow_ignore_eos: bool = False
    max_stop_sequences: int = Field(default=4, ge=0)
    max_tools: int = Field(default=32, ge=0, description="tools (or functions) and tool calls per message")
    max_tools_chars: int = Field(default=32_000, ge=0, description="the tools' JSON, in characters")
    max_name_chars: int = Field(default=64, ge=1, description="message, tool and function names")
    max_logit_bias: int = Field(default=300, ge=0)
    max_response_bytes: int = Field(default=4 * 1_048_576, ge=65_536, description="a non-streamed answer")

    # S3 records
    s3_bucket: str = "eks-llm-inference-responses-000000000000"
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    s3_prefix: str = ""
    s3_attempts: int = Field(default=3, ge=1, le=10)
    s3_connect_timeout: float = Field(default=2.0, gt=0)
    s3_read_timeout: float = Field(default=5.0, gt=0)
    state_cache_seconds: float = Field(default=2.0, ge=0)
    stats_cache_seconds: float = Field(default=5.0, ge=0)

    # Audience API
    public_url: str = "http://127.0.0.1:8080"
    default_mode: Literal["quiz", "survey"] = "quiz"
    # Shorter than ADMIN_TOKEN_MIN_CHARS (or unset): the admin endpoints are off (gateway/routers/admin.py)
    admin_token: SecretStr | None = None
    admin_failures_burst: int = Field(default=5, ge=1, description="failed admin attempts per client")
    admin_failures_per_minute: float = Field(default=1.0, gt=0)
    # Signs the per-browser cookie that identifies a survey entrant; shared by every replica
    client_cookie_secret: SecretStr | None = None
    survey_entries_per_address: int = Field(default=200, ge=1, description="per session and replica")
    lookup_rate_per_second: float = Field(default=0.5, ge=0, description="winner lookups per client")
    lookup_burst: int = Field(default=10, ge=1)
    question_max_chars: int = Field(default=500, ge=1)
    question_max_tokens: int = Field(default=256, ge=1)
    question_system_prompt: str = "You are a helpful assistant at a conference talk. Answer briefly."
    feedback_max_chars: int = Field(default=2000, ge=1)
    company_max_chars: int = Field(default=200, ge=1)

    # Scaling view (admin page): Prometheus's HTTP API and what it watches
    prometheus_url: str = ""  # empty: the scaling view is off
    prometheus_timeout: float = Field(default=2.0, gt=0)
    scaling_namespace: str = "inference"
    scaling_deployment: str = "vllm"  # also the name of KEDA's HPA (base/keda horizontalPodAutoscalerConfig)
    scaling_gateway_deployment: str = "gateway"

    @model_validator(mode="after")
    def _hold_within_in_flight(self) -> Settings:
        # Held requests hold an in-flight slot: a hold as large as the cap would answer 429 before its
        # own bound could answer 503 with Retry-After.
        if self.hold_max_requests >= self.max_in_flight:
            raise ValueError(f"hold_max_requests ({self.hold_max_requests}) must be below max_in_flight "
                             f"({self.max_in_flight})")
        return self

    @field_validator("allowed_models", "upstream_replicas", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("upstream_url")
    @classmethod
    def _upstream_root(cls, value: str) -> str:
        # Accept the OpenAI-style base URL too: the proxy appends /v1/... itself.
        value = value.rstrip("/")
        return value.removesuffix("/v1")

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_root(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("s3_endpoint_url", "admin_token", "client_cookie_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def model_allow_list(self) -> frozenset[str]:
        return frozenset(self.allowed_models or [self.model])

    @property
    def admin_disabled_reason(self) -> str | None:
        """Why the admin endpoints are off, or None when the token is usable."""
        if self.admin_token is None:
            return "GATEWAY_ADMIN_TOKEN is not set"
        length = len(self.admin_token.get_secret_value())
        if length < ADMIN_TOKEN_MIN_CHARS:
            return f"GATEWAY_ADMIN_TOKEN has {length} characters, fewer than {ADMIN_TOKEN_MIN_CHARS}"
        return None

    @field_validator("upstream_replicas")
    @classmethod
    def _replica_roots(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return [cls._upstream_root(url) for url in value]


def get_settings(request: Request) -> Settings:
    """The app's settings (given to ``create_app``); a dependency tests may override."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
