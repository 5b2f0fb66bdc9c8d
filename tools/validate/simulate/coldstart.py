"""A vLLM pod's cold start, by parts, each with the figure's source in the hardware profile:

1. node launch and registration (`launch_api_seconds`, `node_boot_to_ready_seconds`), when no node is free;
2. image pull, with or without SOCI (`image_pull_seconds_*`, from the EC2NodeClass's user data);
3. weights from S3 at the instance's baseline network bandwidth (`model.weights_gigabytes`);
4. engine start: `engine_init_seconds` with a warm torch.compile cache (on a claim the pods share),
   `engine_init_seconds_cold_compile` when every new pod compiles again (an emptyDir): compile_cache.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.validate.model import Resource
from tools.validate.simulate.compile_cache import ENGINE_INIT_KEYS, POD, SHARED, compile_cache_mode
from tools.validate.simulate.hardware import HardwareProfile, InstanceType
from tools.validate.vllm_args import vllm_commands


def compile_cache_survives(deployment: Resource) -> bool:
    """Whether the volume holding vLLM's compile cache is shared by the pods (compile_cache.py decides)."""
    pod = deployment.get("spec", "template", "spec", default={}) or {}
    command = next(vllm_commands(deployment), None)
    if command is None:
        return False
    return compile_cache_mode(pod, pod["containers"][command.container_index]) == SHARED


@dataclass(frozen=True)
class ColdStartPart:
    name: str
    seconds: float
    source: str


def cold_start_parts(
    hardware: HardwareProfile,
    instance: InstanceType,
    image_pull: str,
    compile_cache_warm: bool,
    new_node: bool,
) -> list[ColdStartPart]:
    t, src = hardware.timings, hardware.sources
    parts: list[ColdStartPart] = []
    if new_node:
        parts.append(ColdStartPart("node launch", t["launch_api_seconds"], src["timings.launch_api_seconds"]))
        parts.append(
            ColdStartPart(
                "node registration (Ready)",
                t["node_boot_to_ready_seconds"],
                src["timings.node_boot_to_ready_seconds"],
            )
        )
        key = f"image_pull_seconds_{image_pull}"
        pull = image_pull.replace("_", " ")
        parts.append(ColdStartPart(f"image pull ({pull})", t[key], src[f"timings.{key}"]))
    parts.append(
        ColdStartPart(
            f"weights from S3 at {instance.network_gbps:g} Gb/s",
            hardware.weights_gigabytes * 8.0 / instance.network_gbps,
            src["model.weights_gigabytes"],
        )
    )
    key = ENGINE_INIT_KEYS[SHARED if compile_cache_warm else POD]
    name = "engine start (warm compile cache)" if compile_cache_warm else "engine start (compiling again)"
    parts.append(ColdStartPart(name, t[key], src[f"timings.{key}"]))
    return parts
