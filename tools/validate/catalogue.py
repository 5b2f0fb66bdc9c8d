"""Facts about GPUs, instance types, vLLM quantization methods, models and metrics, read from data/*.yaml.

Nothing is loaded at import time: the engine calls `load_catalogue()` once per run and hands the result
to every rule through `Context.catalogue`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.validate.loader import load_one_mapping

DATA_DIR = Path(__file__).parent / "data"
KIB = 1024
GIB = 1024**3


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: int  # major*10 + minor
    vram_mib: int


@dataclass(frozen=True)
class InstanceFamily:
    name: str
    category: str
    gpu: str
    arch: str = "amd64"


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str
    size: str
    vcpu: int
    memory_mib: int
    gpus: int
    gpu_fraction: float = 1.0  # a share of one GPU (g6f: 0.125 of an L4); EC2 still counts 1 GPU
    gpu_memory_mib: int | None = None  # per GPU, when it differs from the GPU's vram_mib x gpu_fraction

    @property
    def fractional(self) -> bool:
        return self.gpu_fraction < 1


# Karpenter's well-known labels of an instance type (karpenter.sh/docs/reference/instance-types).
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_PREFIX = "karpenter.k8s.aws/instance-"


@dataclass(frozen=True)
class Quantization:
    name: str
    min_capability: int
    source: str


@dataclass(frozen=True)
class ModelProfile:
    name: str
    match: tuple[str, ...]
    quantization: str
    weights_gib: float
    layers: int
    kv_heads: int
    head_dim: int
    kv_cache_dtype_bytes: int
    max_context_tokens: int

    @property
    def kv_cache_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.kv_cache_dtype_bytes

    def required_bytes(self, max_model_len: int, max_num_seqs: int) -> float:
        """Weights plus a KV cache holding `max_num_seqs` sequences of `max_model_len` tokens."""
        return self.weights_gib * GIB + self.kv_cache_bytes_per_token * max_model_len * max_num_seqs


@dataclass(frozen=True)
class MetricStatus:
    name: str
    state: str  # "current" | "deprecated" | "removed" | "unknown"
    since: str | None = None
    replacement: str | None = None


# Suffixes Prometheus adds to histogram and summary series; a query may name any of them.
SERIES_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
# Which suffixed series each metric type has (a type of None: not recorded, any suffix).
_TYPE_SUFFIXES: Mapping[str | None, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": (),
    "info": (),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    None: SERIES_SUFFIXES,
}


@dataclass(frozen=True)
class ExportedMetric:
    """One metric as its exporter declares it: counters without `_total` unless declared with it."""

    name: str
    exporter: str
    type: str | None  # counter | gauge | histogram | summary | info; None where the list does not say
    labels: frozenset[str] | None  # None: any label (an info metric whose labels are its configuration)


@dataclass(frozen=True)
class SeriesMatch:
    """What a series name in a query (`vllm:time_to_first_token_seconds_bucket`) resolves to."""

    metric: ExportedMetric
    suffix: str  # "" or the suffix the query added

    @property
    def labels(self) -> frozenset[str] | None:
        if self.metric.labels is None:
            return None
        extra = {"le"} if self.suffix == "_bucket" else set()
        if self.metric.type == "summary" and not self.suffix:
            extra.add("quantile")
        return self.metric.labels | extra


@dataclass(frozen=True)
class Exporter:
    name: str
    version: str
    sources: tuple[str, ...]
    metrics: Mapping[str, ExportedMetric]


@dataclass(frozen=True)
class Catalogue:
    gpus: Mapping[str, Gpu]
    families: Mapping[str, InstanceFamily]
    instance_types: Mapping[str, InstanceType]
    quantizations: Mapping[str, Quantization]
    models: Mapping[str, ModelProfile]
    metrics_current: frozenset[str]
    metrics_deprecated: Mapping[str, tuple[str, str | None]]
    metrics_removed: Mapping[str, tuple[str, str | None]]
    # What the gateway (gateway/metrics.py) exports: the one non-vLLM source a trigger may read.
    gateway_metrics: frozenset[str] = frozenset()
    # Bottlerocket's settings: every top-level section, and the full keys of the checked sections.
    bottlerocket_sections: frozenset[str] = frozenset()
    bottlerocket_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def gpu_memory_mib(self, itype: InstanceType) -> int:
        """Memory per GPU of an instance type, as Karpenter's `instance-gpu-memory` label says it."""
        if itype.gpu_memory_mib is not None:
            return itype.gpu_memory_mib
        family = self.families.get(itype.family)
        gpu = self.gpus.get(family.gpu) if family else None
        return int(gpu.vram_mib * itype.gpu_fraction) if gpu else 0

    def instance_labels(self, itype: InstanceType) -> dict[str, str]:
        """The labels Karpenter gives a node of this type, for the keys the catalogue knows: what NodePool
        requirements and pod node affinity are matched against."""
        family = self.families.get(itype.family)
        generation = "".join(ch for ch in itype.family.split("-")[0] if ch.isdigit())
        labels = {
            LABEL_INSTANCE_TYPE: itype.name,
            LABEL_ARCH: family.arch if family else "amd64",
            f"{LABEL_PREFIX}family": itype.family,
            f"{LABEL_PREFIX}size": itype.size,
            f"{LABEL_PREFIX}category": family.category if family else itype.family[0],
            f"{LABEL_PREFIX}generation": generation,
            f"{LABEL_PREFIX}cpu": str(itype.vcpu),
            f"{LABEL_PREFIX}memory": str(itype.memory_mib),
        }
        if family is not None:
            labels |= {
                f"{LABEL_PREFIX}gpu-name": family.gpu,
                f"{LABEL_PREFIX}gpu-manufacturer": "nvidia",
                f"{LABEL_PREFIX}gpu-count": str(itype.gpus),
                f"{LABEL_PREFIX}gpu-memory": str(self.gpu_memory_mib(itype)),
            }
        return labels
    # Every exporter the dashboards and alerts read (vLLM and the gateway included), with labels.
    exporters: Mapping[str, Exporter] = field(default_factory=dict)
    # Labels Prometheus adds to every scraped series (job, instance, namespace, pod, ...).
    scrape_labels: frozenset[str] = frozenset()

    def series(self, name: str) -> SeriesMatch | None:
        """The exported metric a series name in a query reads, with the suffix the query added."""
        for exporter in self.exporters.values():
            metric = exporter.metrics.get(name)
            if metric is not None:
                return SeriesMatch(metric, "")
        for suffix in SERIES_SUFFIXES:
            if not name.endswith(suffix):
                continue
            base = name[: -len(suffix)]
            for exporter in self.exporters.values():
                metric = exporter.metrics.get(base)
                declared_total = metric is not None and metric.name.endswith("_total")
                if metric is not None and suffix in _TYPE_SUFFIXES[metric.type] and not (
                    declared_total and suffix == "_total"
                ):
                    return SeriesMatch(metric, suffix)
        return None

    def gpus_of_categories(self, categories: Iterable[str]) -> set[str]:
        wanted = set(categories)
        return {f.gpu for f in self.families.values() if f.category in wanted}

    def gpu_of_family(self, family: str) -> str | None:
        entry = self.families.get(family)
        return entry.gpu if entry else None

    def model_for(self, *names: str) -> ModelProfile | None:
        """The profile whose every match pattern occurs in one of `names` (case-insensitive)."""
        for model in self.models.values():
            for name in names:
                lowered = name.lower()
                if lowered and all(p in lowered for p in model.match):
                    return model
        return None

    def metric_status(self, name: str) -> MetricStatus:
        """Whether `name` (`vllm:...`, any histogram/counter series suffix) is exported by vLLM today."""
        for candidate in _candidates(name):
            if candidate in self.metrics_current:
                return MetricStatus(candidate, "current")
            if candidate in self.metrics_deprecated:
                since, repl = self.metrics_deprecated[candidate]
                return MetricStatus(candidate, "deprecated", since, repl)
            if candidate in self.metrics_removed:
                since, repl = self.metrics_removed[candidate]
                return MetricStatus(candidate, "removed", since, repl)
        return MetricStatus(name, "unknown")


def _candidates(name: str) -> list[str]:
    out = [name]
    for suffix in SERIES_SUFFIXES:
        if name.endswith(suffix):
            out.append(name[: -len(suffix)])
    return out


def _read(path: Path) -> dict[str, Any]:
    # The gate's own loader (libyaml events): a few times faster than yaml.safe_load, and every run
    # starts by reading these files.
    return load_one_mapping(path)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read the catalogue from `path` (a directory holding the data/*.yaml files; default: the package's)."""
    root = Path(path) if path is not None else DATA_DIR
    gpus_doc = _read(root / "gpus.yaml")
    types_doc = _read(root / "instance_types.yaml")
    quant_doc = _read(root / "quantization.yaml")
    models_doc = _read(root / "models.yaml")
    metrics_doc = _read(root / "vllm_metrics.yaml")
    gateway_doc = _read(root / "gateway_metrics.yaml")
    bottlerocket_doc = _read(root / "bottlerocket_settings.yaml")
    exporters = {
        "vllm": _listed_exporter("vllm", "0.32.0", metrics_doc, metrics_doc["labels"]["default"]),
        "gateway": _listed_exporter("gateway", "this repository", gateway_doc, []),
    }
    scrape_labels: frozenset[str] = frozenset()
    for path in sorted((root / "exporters").glob("*.yaml")):
        exporter, labels = _exporter_file(path)
        if exporter.name in exporters:
            raise ValueError(f"{path}: exporter {exporter.name!r} is described twice")
        exporters[exporter.name] = exporter
        scrape_labels |= labels

    gpus = {
        name: Gpu(name, int(v["compute_capability"]), int(v["vram_mib"]))
        for name, v in gpus_doc["gpus"].items()
    }
    families = {
        name: InstanceFamily(name, str(v["category"]), str(v["gpu"]), str(v.get("arch", "amd64")))
        for name, v in gpus_doc["families"].items()
    }
    for family in families.values():
        if family.gpu not in gpus:
            raise ValueError(f"{root / 'gpus.yaml'}: family {family.name} names unknown GPU {family.gpu!r}")
    instance_types = {}
    for name, v in types_doc["instance_types"].items():
        family, _, size = name.partition(".")
        memory = v.get("gpu_memory_mib")
        instance_types[name] = InstanceType(
            name, family, size, int(v["vcpu"]), int(v["memory_mib"]), int(v["gpus"]),
            float(v.get("gpu_fraction", 1)), int(memory) if memory is not None else None,
        )
    quantizations = {
        name: Quantization(name, int(v["min_capability"]), str(v.get("source", "")))
        for name, v in quant_doc["methods"].items()
    }
    models = {
        name: ModelProfile(
            name=name,
            match=tuple(str(p).lower() for p in v["match"]),
            quantization=str(v["quantization"]),
            weights_gib=float(v["weights_gib"]),
            layers=int(v["layers"]),
            kv_heads=int(v["kv_heads"]),
            head_dim=int(v["head_dim"]),
            kv_cache_dtype_bytes=int(v["kv_cache_dtype_bytes"]),
            max_context_tokens=int(v["max_context_tokens"]),
        )
        for name, v in models_doc["models"].items()
    }
    return Catalogue(
        gpus=gpus,
        families=families,
        instance_types=instance_types,
        quantizations=quantizations,
        models=models,
        gateway_metrics=frozenset(gateway_doc["current"]),
        bottlerocket_sections=frozenset(bottlerocket_doc["sections"]),
        bottlerocket_keys={k: frozenset(v) for k, v in bottlerocket_doc["keys"].items()},
        exporters=exporters,
        scrape_labels=scrape_labels,
        metrics_current=frozenset(metrics_doc["current"]),
        metrics_deprecated={
            k: (str(v["since"]), v.get("replacement")) for k, v in metrics_doc["deprecated"].items()
        },
        metrics_removed={
            k: (str(v["since"]), v.get("replacement")) for k, v in metrics_doc["removed"].items()
        },
    )


def _labels(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(str(label) for label in value)


def _listed_exporter(name: str, version: str, doc: Mapping[str, Any], default_labels: Any) -> Exporter:
    """vLLM's and the gateway's files: a `current` list of names and a `labels` section."""
    labels_doc = doc.get("labels") or {}
    per_metric = labels_doc.get("metrics", labels_doc) if name == "vllm" else labels_doc
    metrics = {
        metric: ExportedMetric(metric, name, None, _labels(per_metric.get(metric, default_labels)))
        for metric in doc["current"]
    }
    sources = tuple(str(v) for v in (doc.get("sources") or {}).values())
    return Exporter(name, version, sources, metrics)


def _exporter_file(path: Path) -> tuple[Exporter, frozenset[str]]:
    doc = _read(path)
    try:
        name = str(doc["exporter"])
        metrics = {
            metric: ExportedMetric(metric, name, str(entry["type"]), _labels(entry["labels"]))
            for metric, entry in doc["metrics"].items()
        }
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: every exporter needs `exporter` and `metrics` with a type and labels "
                         f"each ({exc!r} missing or malformed)") from None
    for metric in metrics.values():
        if metric.type not in _TYPE_SUFFIXES:
            raise ValueError(f"{path}: {metric.name} has unknown type {metric.type!r}")
    sources = tuple(str(s) for s in doc.get("sources") or ())
    scrape_labels = frozenset(str(label) for label in doc.get("scrape_labels") or ())
    return Exporter(name, str(doc.get("version", "")), sources, metrics), scrape_labels
