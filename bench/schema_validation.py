"""Benchmark: schema validation throughput (resources/s) on one core.

Method: N Deployments (the vLLM example of the tests, each with a distinct name and a distinct
argument list, one in ten with a misspelt field so the error path is measured too) are validated
(a) by SchemaValidator.validate (jsonschema-rs, what the gate runs), (b) by jsonschema-rs directly,
(c) by the pure-Python jsonschema Draft 2020-12 validator on the same Kubernetes schema (precompiled,
errors collected). Construction and the first compile are timed separately.

    python -m bench.schema_validation [--count 5000] [--kubernetes-version 1.33] [--rendered FILE]

Last results (2026-11-28, one core of a shared 2-core machine under a load average of ~11, so
absolute figures are pessimistic):

    taskset -c 1 python -m bench.schema_validation --count 5000 --rendered prod.yaml
    (prod.yaml = `kubectl kustomize overlays/prod`, 23 resources of 15 kinds, repeated to 5,000)

    SchemaValidator() construction                          1.10 s
    first Deployment (compiles apps/v1 Deployment)          0.02 s
    SchemaValidator.validate (jsonschema-rs + messages)    30,022 resources/s
    SchemaValidator.validate, prod overlay (15 kinds)      25,890 resources/s
    jsonschema-rs is_valid                                 40,618 resources/s
    jsonschema-rs iter_errors                              24,714 resources/s
    jsonschema (pure Python) iter_errors                      195 resources/s

jsonschema-rs is ~100x faster than the pure-Python validator on the same schema; the pure-Python
one alone could not meet the gate's 2,000 resources/s for schema + policy.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import yaml
from referencing import Registry
from referencing import Resource as ReferencingResource

from tools.validate.model import Resource
from tools.validate.schema import CORE_DEFINITIONS_URI, SchemaValidator, _core_definitions

EXAMPLE = Path(__file__).resolve().parents[1] / "tests/validate/schema/examples/deployment.yaml"


def deployments(count: int) -> list[dict[str, Any]]:
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    docs = []
    for i in range(count):
        doc = copy.deepcopy(base)
        doc["metadata"]["name"] = f"vllm-{i}"
        container = doc["spec"]["template"]["spec"]["containers"][0]
        container["args"] = ["--max-num-seqs", str(16 + i % 32)]
        if i % 10 == 0:
            container["imagePullPolcy"] = container.pop("imagePullPolicy")
        docs.append(doc)
    return docs


def rate(label: str, count: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"{label:<58} {count / elapsed:>10,.0f} resources/s  ({elapsed:.3f} s)")
    return count / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--kubernetes-version", default="1.33")
    parser.add_argument(
        "--rendered", type=Path, help="also validate this rendered overlay, repeated to --count"
    )
    args = parser.parse_args(argv)
    docs = deployments(args.count)
    resources = [Resource(doc=d, overlay="bench") for d in docs]

    start = time.perf_counter()
    validator = SchemaValidator(kubernetes_version=args.kubernetes_version)
    print(f"{'SchemaValidator() construction':<58} {time.perf_counter() - start:>10.3f} s")
    start = time.perf_counter()
    validator.validate(resources[0])
    print(f"{'first Deployment (compiles apps/v1 Deployment)':<58} {time.perf_counter() - start:>10.3f} s")

    violations: list[Any] = []
    rate("SchemaValidator.validate (jsonschema-rs + messages)", len(resources),
         lambda: [violations.extend(validator.validate(r)) for r in resources])  # fmt: skip
    assert len(violations) == len(range(0, args.count, 10)), "one unknown field per tenth Deployment"

    if args.rendered:
        rendered = [d for d in yaml.safe_load_all(args.rendered.read_text(encoding="utf-8")) if d]
        mix = [Resource(doc=rendered[i % len(rendered)], overlay="bench") for i in range(args.count)]
        kinds = len({(r.api_version, r.kind) for r in mix})
        rate(f"SchemaValidator.validate, {args.rendered.name} ({kinds} kinds)", len(mix),
             lambda: [validator.validate(r) for r in mix])  # fmt: skip

    definitions = _core_definitions(args.kubernetes_version)
    root = {"$ref": f"{CORE_DEFINITIONS_URI}#/$defs/io.k8s.api.apps.v1.Deployment"}
    compiled = jsonschema_rs.Draft202012Validator(
        root, registry=jsonschema_rs.Registry([(CORE_DEFINITIONS_URI, definitions)])
    )
    rate("jsonschema-rs is_valid", len(docs), lambda: [compiled.is_valid(d) for d in docs])
    rate("jsonschema-rs iter_errors", len(docs), lambda: [list(compiled.iter_errors(d)) for d in docs])

    registry: Registry = Registry().with_resource(
        CORE_DEFINITIONS_URI, ReferencingResource.from_contents(definitions)
    )
    python = jsonschema.Draft202012Validator(root, registry=registry)
    sample = docs[: max(1, min(len(docs), 500))]
    rate(f"jsonschema (pure Python) iter_errors, first {len(sample)}", len(sample),
         lambda: [list(python.iter_errors(d)) for d in sample])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
