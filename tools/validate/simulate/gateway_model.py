"""The gateway in front of vLLM, as built (gateway/limits.py, gateway/hold.py, gateway/settings.py).

- Admission (gateway/limits.py `Admission.acquire`): a request past `max_in_flight` requests in flight
  in one gateway pod gets 429 at once; so does every request while vLLM's waiting queue, summed over
  the ready replicas at the gateway's last poll (`upstream_metrics_poll_seconds`), is above
  `shed_queue_waiting`.
- The hold (gateway/hold.py): while no vLLM replica is ready, requests wait first in first out, at most
  `hold_max_requests` per gateway pod (past it: 503 at once) and at most `hold_timeout_seconds` (then
  503). When a replica becomes ready the held requests go to it in arrival order.
- Client timeouts: no first token within `upstream_first_token_timeout` seconds is a 504.
- The load balancer sends traffic only to ready gateway pods. The gateway's readiness does not depend on
  vLLM (gateway/routers/health.py: a gateway that reported vLLM at zero as not ready could not hold), so
  every gateway pod the HorizontalPodAutoscaler keeps (its minReplicas) is registered throughout.

The defaults are read from gateway/settings.py itself; the rendered `gateway-config` ConfigMap
(`GATEWAY_*`) overrides them, as in the cluster.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tools.validate.model import Resource

SETTINGS_PREFIX = "GATEWAY_"
_FIELDS = {
    "max_in_flight": int,
    "shed_queue_waiting": int,
    "hold_max_requests": int,
    "hold_timeout_seconds": float,
    "upstream_first_token_timeout": float,
    "upstream_metrics_poll_seconds": float,
}


def _settings_defaults() -> dict[str, float]:
    from gateway.settings import Settings

    fields = Settings.model_fields
    return {name: float(kind(fields[name].default)) for name, kind in _FIELDS.items()}


@dataclass(frozen=True)
class GatewayLimits:
    max_in_flight: float  # per gateway pod
    shed_queue_waiting: float  # vLLM waiting, summed over ready replicas; 0 or poll 0: never shed
    hold_max_requests: float  # per gateway pod
    hold_timeout_seconds: float
    first_token_timeout: float
    poll_seconds: float
    gateway_pods: int

    @property
    def in_flight_cap(self) -> float:
        return self.max_in_flight * self.gateway_pods

    @property
    def hold_cap(self) -> float:
        return self.hold_max_requests * self.gateway_pods

    @property
    def sheds(self) -> bool:
        return self.poll_seconds > 0


def gateway_limits(
    resources: Sequence[Resource] = (), overrides: Mapping[str, float] | None = None
) -> GatewayLimits:
    """The gateway's settings: gateway/settings.py's defaults, the rendered gateway-config, `overrides`."""
    values = _settings_defaults()
    pods = 1
    for res in resources:
        if res.kind == "ConfigMap" and res.name.endswith("gateway-config"):
            for key, text in (res.get("data", default={}) or {}).items():
                name = str(key).removeprefix(SETTINGS_PREFIX).lower()
                if str(key).startswith(SETTINGS_PREFIX) and name in _FIELDS:
                    values[name] = float(text)
        target = str(res.get("spec", "scaleTargetRef", "name"))
        if res.kind == "HorizontalPodAutoscaler" and "gateway" in target:
            pods = int(res.get("spec", "minReplicas", default=1) or 1)
    values.update(overrides or {})
    return GatewayLimits(
        max_in_flight=values["max_in_flight"],
        shed_queue_waiting=values["shed_queue_waiting"],
        hold_max_requests=values["hold_max_requests"],
        hold_timeout_seconds=values["hold_timeout_seconds"],
        first_token_timeout=values["upstream_first_token_timeout"],
        poll_seconds=values["upstream_metrics_poll_seconds"],
        gateway_pods=pods,
    )


class HoldQueue:
    """Requests (fluid counts) held while no replica is ready, first in first out."""

    def __init__(self, capacity: float, timeout: float) -> None:
        self.capacity, self.timeout = capacity, timeout
        self.chunks: deque[list[float]] = deque()  # [arrived, count]
        self.size = 0.0
        self.held_total = 0.0  # requests that entered the hold
        self.expired = 0.0  # requests answered 503 after hold_timeout_seconds
        self.refused = 0.0  # requests answered 503 at once: the hold was full

    def hold(self, now: float, count: float) -> None:
        room = max(self.capacity - self.size, 0.0)
        taken = min(room, count)
        self.refused += count - taken
        if taken > 0:
            self.chunks.append([now, taken])
            self.size += taken
            self.held_total += taken

    def expire(self, now: float) -> float:
        """Drop the requests held for `timeout` or longer; returns how many."""
        dropped = 0.0
        while self.chunks and now - self.chunks[0][0] >= self.timeout:
            dropped += self.chunks.popleft()[1]
        self.size -= dropped
        self.expired += dropped
        return dropped

    def release(self, now: float) -> list[tuple[float, float]]:
        """Everything held, oldest first, as (seconds held, count); the hold is empty afterwards."""
        out = [(now - arrived, count) for arrived, count in self.chunks]
        self.chunks.clear()
        self.size = 0.0
        return out
