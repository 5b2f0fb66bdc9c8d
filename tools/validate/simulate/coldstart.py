"""A vLLM pod's cold start, by parts, each with the figure's source in the hardware profile:

1. node launch and registration (`launch_api_seconds`, `node_boot_to_ready_seconds`), when no node is free;
2. image pull, with or without SOCI (`image_pull_seconds_*`, from the EC2NodeClass's user data);
3. weights from S3 at the instance's baseline network bandwidth (`model.weights_gigabytes`);
4. engine start (`engine_init_seconds`, measured with a warm torch.compile cache), plus
   `cold_start.compile_cold_extra_seconds` when the compile cache does not survive the pod: vLLM keeps it
   under VLLM_CACHE_ROOT (default ~/.cache/vllm); on an emptyDir every new pod compiles again, on a
   persistent or shared volume the next pod finds it warm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.validate.model import Resource
from tools.validate.simulate.hardware import HardwareProfile, InstanceType

VLLM_CACHE_ENV = "VLLM_CACHE_ROOT"
VLLM_DEFAULT_CACHE_DIR = "/root/.cache/vllm"
SHARED_VOLUME_KINDS = ("persistentVolumeClaim", "ephemeral", "nfs", "csi", "hostPath")


def _vllm_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for container in pod.get("containers") or ():
        text = f"{container.get('image', '')} {' '.join(str(c) for c in container.get('command') or ())}"
        if "vllm" in text:
            return container
    return None


def compile_cache_survives(deployment: Resource) -> bool:
    """Whether the volume holding vLLM's compile cache outlives the pod (not an emptyDir, not the
    container's own filesystem)."""
    pod = deployment.get("spec", "template", "spec", default={}) or {}
    container = _vllm_container(pod)
    if container is None:
        return False
    env = {str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or ()}
    cache_dir = env.get(VLLM_CACHE_ENV, VLLM_DEFAULT_CACHE_DIR)
    best: tuple[int, str] | None = None
    for mount in container.get("volumeMounts") or ():
        path = str(mount.get("mountPath", "")).rstrip("/")
        inside = path and (cache_dir == path or cache_dir.startswith(path + "/"))
        if inside and (best is None or len(path) > best[0]):
            best = (len(path), str(mount.get("name")))
    if best is None:
        return False
    volume = next((v for v in pod.get("volumes") or () if v.get("name") == best[1]), {})
    return any(kind in volume for kind in SHARED_VOLUME_KINDS)


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
    parts.append(ColdStartPart("engine start (warm compile cache)", t["engine_init_seconds"],
                               src["timings.engine_init_seconds"]))
    extra = hardware.figures.get("cold_start.compile_cold_extra_seconds", 0.0)
    if not compile_cache_warm and extra:
        parts.append(
            ColdStartPart("torch.compile without a surviving cache", extra,
                          src["cold_start.compile_cold_extra_seconds"])
        )
    return parts
