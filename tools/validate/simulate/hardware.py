"""The hardware profile: figures the manifests cannot state (timings, GPU throughput, Spot, prices).
What an instance type is (its GPU, size and labels) and a GPU's compute capability come from the gate's
catalogue (`tools.validate.catalogue`), as the rules read them.

A profile is a YAML file; built-in ones live in `profiles/` beside this module and are named by their
file stem (`aws-g5-mistral7b-awq`). Every figure is `{value, type, source}` so that each number the
simulator prints can be traced to where it was published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.validate.catalogue import Catalogue, load_catalogue
from tools.validate.karpenter import GPU_NAME

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_HARDWARE = "aws-g5-mistral7b-awq"
# Listed explicitly (no globbing): adding a profile means adding its name here.
BUILTIN_HARDWARE = (DEFAULT_HARDWARE,)
OPTIONAL_SECTIONS = {
    "serving": ("prompt_tokens_per_request", "runtime_overhead_gib"),
    "spot_risk": ("correlated_reclaim_share", "stress_shortage"),
}
FIGURE_TYPES = ("DOC", "VENDOR", "BLOG", "ISSUE", "DERIVED", "ASSUMPTION")

TIMING_KEYS = (
    "metrics_scrape_interval_seconds",
    "metrics_export_delay_seconds",
    "scheduler_unschedulable_seconds",
    "karpenter_batch_idle_seconds",
    "launch_api_seconds",
    "node_boot_to_ready_seconds",
    "image_pull_seconds_soci_bottlerocket",
    "image_pull_seconds_soci_al2023",
    "image_pull_seconds_default",
    "engine_init_seconds",
    "engine_init_seconds_cold_compile",
    "spot_interruption_notice_seconds",
    "node_minimum_billed_seconds",
    "metrics_server_resolution_seconds",
)


class HardwareProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: float
    tokens_per_second_by_batch: Mapping[int, float]


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: Gpu
    gpus: int
    vcpu: float
    memory_gib: float
    network_gbps: float
    on_demand_per_hour: float
    spot_per_hour: float
    spot_interruptions_per_month: float
    labels: Mapping[str, str]
    # Chance that Spot capacity of this type cannot be had at launch (optional `spot_unavailable_at_launch`).
    spot_unavailable_at_launch: float = 0.0

    def price(self, capacity_type: str) -> float:
        return self.spot_per_hour if capacity_type == "spot" else self.on_demand_per_hour


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    timings: Mapping[str, float]
    weights_gigabytes: float
    min_compute_capability: float
    cpu_busy_cores: float
    cpu_idle_cores: float
    output_tokens_per_request: float
    prefill_seconds: float
    k6_think_seconds: float
    gpus: Mapping[str, Gpu]
    instance_types: tuple[InstanceType, ...]
    sources: Mapping[str, str]
    # Optional figures of the `serving`, `spot_risk` and `cold_start` sections (user-facing latency, the KV
    # cache, Spot shortages, cold start by parts), by `section.key`; absent sections leave them out.
    figures: Mapping[str, float] = field(default_factory=dict)

    def timing(self, key: str) -> float:
        return self.timings[key]


def _figure(section: Mapping[str, Any], key: str, where: str, sources: dict[str, str]) -> Any:
    entry = section.get(key)
    if not isinstance(entry, Mapping) or "value" not in entry:
        raise HardwareProfileError(f"{where}.{key}: missing (expected a mapping with value, type, source)")
    if not str(entry.get("source") or "").strip():
        raise HardwareProfileError(f"{where}.{key}: every figure needs a source")
    if entry.get("type") not in FIGURE_TYPES:
        raise HardwareProfileError(f"{where}.{key}: type must be one of {', '.join(FIGURE_TYPES)}")
    sources[f"{where}.{key}"] = f"{entry['type']}: {entry['source']}"
    return entry["value"]


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise HardwareProfileError(f"{key}: missing section")
    return value


def parse_hardware_profile(doc: Any, origin: str, catalogue: Catalogue | None = None) -> HardwareProfile:
    """The profile's figures, with each GPU's compute capability and each instance type's GPU, size and
    labels from the gate's catalogue (`catalogue`, else the built-in one)."""
    if not isinstance(doc, Mapping):
        raise HardwareProfileError(f"{origin}: expected a mapping at the top level")
    catalogue = catalogue if catalogue is not None else load_catalogue()
    try:
        sources: dict[str, str] = {}
        timings_doc = _section(doc, "timings")
        timings = {k: float(_figure(timings_doc, k, "timings", sources)) for k in TIMING_KEYS}
        model = _section(doc, "model")
        cpu = _section(doc, "vllm_cpu")
        workload = _section(doc, "workload")
        gpus: dict[str, Gpu] = {}
        for name, gpu_doc in _section(doc, "gpus").items():
            table = _figure(gpu_doc, "tokens_per_second_by_batch", f"gpus.{name}", sources)
            if not isinstance(table, Mapping) or not table:
                raise HardwareProfileError(
                    f"gpus.{name}.tokens_per_second_by_batch: expected {{batch: tok/s}}"
                )
            known = catalogue.gpus.get(str(name))
            if known is None:
                raise HardwareProfileError(f"gpus.{name}: not a GPU of the catalogue (tools/validate/data/)")
            gpus[str(name)] = Gpu(
                name=str(name),
                compute_capability=known.compute_capability / 10,  # the catalogue keeps major*10 + minor
                tokens_per_second_by_batch={int(b): float(v) for b, v in sorted(table.items())},
            )
        instances = []
        for entry in doc.get("instance_types") or ():
            name = entry.get("name", "?")
            if not str(entry.get("source") or "").strip():
                raise HardwareProfileError(f"instance_types.{name}: needs a source")
            listed = catalogue.instance_types.get(str(name))
            if listed is None:
                raise HardwareProfileError(
                    f"instance_types.{name}: not an instance type of the catalogue (tools/validate/data/)"
                )
            labels = catalogue.instance_labels(listed)
            gpu_name = labels.get(GPU_NAME)
            if gpu_name not in gpus:
                raise HardwareProfileError(f"instance_types.{name}: its GPU {gpu_name!r} is not under gpus:")
            sources[f"instance_types.{name}"] = str(entry["source"])
            instances.append(
                InstanceType(
                    name=str(name),
                    gpu=gpus[gpu_name],
                    gpus=listed.gpus,
                    vcpu=float(listed.vcpu),
                    memory_gib=listed.memory_mib / 1024,
                    network_gbps=float(entry["network_gbps"]),
                    on_demand_per_hour=float(entry["on_demand_per_hour"]),
                    spot_per_hour=float(entry["spot_per_hour"]),
                    spot_interruptions_per_month=float(entry["spot_interruptions_per_month"]),
                    labels=labels,
                    spot_unavailable_at_launch=float(entry.get("spot_unavailable_at_launch", 0.0)),
                )
            )
        if not instances:
            raise HardwareProfileError("instance_types: at least one instance type is needed")
        figures: dict[str, float] = {}
        for section_name, keys in OPTIONAL_SECTIONS.items():
            section = doc.get(section_name)
            if section is None:
                continue
            if not isinstance(section, Mapping):
                raise HardwareProfileError(f"{section_name}: expected a mapping")
            for key in keys:
                figures[f"{section_name}.{key}"] = float(_figure(section, key, section_name, sources))
        return HardwareProfile(
            name=str(doc.get("name") or origin),
            timings=timings,
            weights_gigabytes=float(_figure(model, "weights_gigabytes", "model", sources)),
            min_compute_capability=float(_figure(model, "min_compute_capability", "model", sources)),
            cpu_busy_cores=float(_figure(cpu, "busy_cores", "vllm_cpu", sources)),
            cpu_idle_cores=float(_figure(cpu, "idle_cores", "vllm_cpu", sources)),
            output_tokens_per_request=float(
                _figure(workload, "output_tokens_per_request", "workload", sources)
            ),
            prefill_seconds=float(_figure(workload, "prefill_seconds", "workload", sources)),
            k6_think_seconds=float(_figure(workload, "k6_think_seconds", "workload", sources)),
            gpus=gpus,
            instance_types=tuple(instances),
            sources=sources,
            figures=figures,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, HardwareProfileError):
            raise HardwareProfileError(f"{origin}: {exc}") from None
        raise HardwareProfileError(f"{origin}: malformed profile ({exc!r})") from None


def load_hardware_profile(name_or_path: str) -> HardwareProfile:
    path = Path(name_or_path)
    if not path.suffix:
        if name_or_path not in BUILTIN_HARDWARE:
            known = ", ".join(BUILTIN_HARDWARE)
            raise HardwareProfileError(f"unknown hardware profile {name_or_path!r} (built-in: {known})")
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HardwareProfileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HardwareProfileError(f"{path}: not valid YAML ({exc})") from None
    return parse_hardware_profile(doc, str(path))
