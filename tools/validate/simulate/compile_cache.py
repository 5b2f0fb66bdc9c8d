"""Where vLLM's torch.compile cache lives, and so which engine start a new pod gets.

vLLM keeps its compiled graphs under VLLM_CACHE_ROOT (default ~/.cache/vllm) and Triton its kernels
under TRITON_CACHE_DIR. On a volume every pod shares (a PersistentVolumeClaim, prod's EFS claim) a
new pod finds what an earlier pod compiled and starts warm; on the pod's own emptyDir (or its root
filesystem) every new pod compiles again: the cold start. The two figures are the hardware profile's
`engine_init_seconds` and `engine_init_seconds_cold_compile`, each with its source.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

SHARED = "shared"
POD = "pod"
ENGINE_INIT_KEYS = {SHARED: "engine_init_seconds", POD: "engine_init_seconds_cold_compile"}


def describe_compile_cache(mode: str) -> str:
    """How the simulator starts a new pod's engine, in words for the summary."""
    if mode == SHARED:
        return "compile cache on a shared claim (warm engine start)"
    return "compile cache in the pod (cold engine start: every new pod compiles)"


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(item.get("name")): str(item.get("value"))
        for item in container.get("env") or ()
        if isinstance(item, Mapping) and "value" in item
    }


def cache_root(container: Mapping[str, Any]) -> str:
    """The directory vLLM compiles into: VLLM_CACHE_ROOT, else XDG_CACHE_HOME/vllm, else ~/.cache/vllm."""
    env = _env(container)
    if env.get("VLLM_CACHE_ROOT"):
        return posixpath.normpath(env["VLLM_CACHE_ROOT"])
    xdg = env.get("XDG_CACHE_HOME") or posixpath.join(env.get("HOME") or "/root", ".cache")
    return posixpath.normpath(posixpath.join(xdg, "vllm"))


def compile_cache_mode(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """SHARED when the deepest mount holding the cache root is a PersistentVolumeClaim, else POD."""
    root = cache_root(container)
    volumes = {str(v.get("name")): v for v in pod.get("volumes") or () if isinstance(v, Mapping)}
    holding = [
        mount
        for mount in container.get("volumeMounts") or ()
        if isinstance(mount, Mapping)
        and (root == posixpath.normpath(str(mount.get("mountPath", "/")))
             or root.startswith(posixpath.normpath(str(mount.get("mountPath", "/"))).rstrip("/") + "/"))
    ]
    if not holding:
        return POD
    deepest = max(holding, key=lambda mount: len(posixpath.normpath(str(mount.get("mountPath", "/")))))
    volume = volumes.get(str(deepest.get("name")), {})
    return SHARED if "persistentVolumeClaim" in volume else POD
