"""One replica of a given throughput table, for tests that hand the simulator measured figures."""

from __future__ import annotations

from dataclasses import replace

from tools.validate.catalogue import load_catalogue
from tools.validate.simulate.engine import SimOptions, SimResult, simulate
from tools.validate.simulate.hardware import DEFAULT_HARDWARE, Gpu, load_hardware_profile
from tools.validate.simulate.latency import SloObjectives
from tools.validate.simulate.load import LoadProfile
from tools.validate.simulate.manifests import Cluster, VllmDeployment
from tools.validate.simulate.serving import ServingModel


def single_replica(service: dict[int, float], max_num_seqs: int, load: LoadProfile, *, tokens: int,
                   prefill: float = 0.0, step_seconds: float = 0.5) -> SimResult:
    """One always-ready replica whose request at batch b takes ``service[b]`` seconds, ``prefill`` of
    them before the first token; the serving model on (latency recorded), nothing else around it (no
    gateway, no autoscaler, no Spot, a GPU the catalogue does not know: no KV cache limit)."""
    hardware = load_hardware_profile(DEFAULT_HARDWARE)
    table = {b: b * tokens / (seconds - prefill) for b, seconds in service.items()}
    measured = Gpu("measured", 9.0, table)
    instance = replace(hardware.instance_types[0], gpu=measured, gpus=1)
    hardware = replace(hardware, gpus={"measured": measured}, instance_types=(instance,),
                       prefill_seconds=prefill, output_tokens_per_request=float(tokens))
    deployment = VllmDeployment(
        name="vllm", namespace="", container="vllm", image="vllm", flags={}, max_num_seqs=max_num_seqs,
        max_model_len=None, gpus_per_pod=1, cpu_request=1.0, memory_request_gib=1.0, startup_probe=None,
        readiness_probe=None, termination_grace_seconds=30.0, replicas=1, node_requirements=(),
        tolerations=())
    cluster = Cluster("single-replica", deployment, None, (), None, None, None)
    serving = ServingModel(load_catalogue(), SloObjectives())
    return simulate(cluster, hardware, load, SimOptions(step_seconds=step_seconds, spot_interruptions=False,
                                                        serving=serving))
