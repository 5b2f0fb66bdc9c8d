"""The mechanisms between the autoscaler and the user, switched on together for `gate diff` and the
scenarios: user-facing latency with the KV cache (latency.py, kvcache.py), the gateway as built
(gateway_model.py), Spot as a risk (spot.py) and cold start by parts (coldstart.py). Without a
`ServingModel` the engine is the HPA/KEDA core alone (throughput table as measured, every request that
finds no replica rejected, Spot always available)."""

from __future__ import annotations

from dataclasses import dataclass

from tools.validate.catalogue import Catalogue
from tools.validate.simulate.gateway_model import GatewayLimits
from tools.validate.simulate.latency import SloObjectives
from tools.validate.simulate.spot import SpotRisk


@dataclass(frozen=True)
class ServingModel:
    catalogue: Catalogue
    objectives: SloObjectives
    gateway: GatewayLimits | None = None
    spot: SpotRisk | None = None
    compile_cache_warm: bool = True
    # Times at which every Spot node serving a replica gets its 2-minute notice together (spot-stress).
    reclaim_pool_at: tuple[float, ...] = ()
