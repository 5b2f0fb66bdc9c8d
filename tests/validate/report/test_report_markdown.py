# Expected output is kept verbatim, emoji included.
# ruff: noqa: E501, RUF001
from __future__ import annotations

from report_samples import make_report

from tools.validate.model import Finding, Report, Severity, SourceLocation
from tools.validate.report import RenderOptions, render
from tools.validate.report.markdown import code, escape

EXPECTED = """\
## ❌ Policy gate failed

**2 errors**, **1 warning**, **1 info** (1 suppressed); 14 resources in 2 overlays checked (dev, prod). \
Fails at **warning** or above.

### dev

| Severity | Rule | Resource | Source | Message |
| --- | --- | --- | --- | --- |
| ℹ️ info | `gpu/awq-on-ampere` | `Deployment/llm/vllm spec.template.spec.containers[0].args` \
| `base/vllm/deployment.yaml` | NodePool gpu may launch g4dn (Turing); AWQ needs Ampere. |

<details><summary>How to fix</summary>

- `gpu/awq-on-ampere` on `Deployment/llm/vllm`: Allow only g5/g6/p4 instance families in the NodePool.

</details>

### prod

| Severity | Rule | Resource | Source | Message |
| --- | --- | --- | --- | --- |
| ❌ error | `input/duplicate-key` | `(whole overlay)` | `overlays/prod/kustomization.yaml:7` \
| duplicate key 'resources' |
| ⚠️ warning | `security/run-as-non-root` | `Deployment/llm/vllm spec.template.spec.containers[0].securityContext` \
| `base/vllm/deployment.yaml:41` | container \\`vllm\\` runs as uid 0 \\| 100% of pods,<br>set runAsNonRoot: true |
| ❌ error | `scaling/keda-max-within-gpu-limit` | `ScaledObject/llm/vllm spec.maxReplicaCount` \
| `overlays/prod/patch-keda.yaml:12` | KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs. |

<details><summary>How to fix</summary>

- `input/duplicate-key` on `(whole overlay)`: Keep one 'resources' list.
- `security/run-as-non-root` on `Deployment/llm/vllm`: Set runAsUser: 1000 in overlays/prod/patch-security.yaml.
- `scaling/keda-max-within-gpu-limit` on `ScaledObject/llm/vllm`: Lower maxReplicaCount or raise the NodePool's \
nvidia.com/gpu limit.

</details>

### Suppressed (1)

- `security/run-as-non-root` on `dev Deployment/llm/gateway`: container gateway runs as uid 0 \
— reason: binds port 80 until the Service maps 8080, PLAT-12, expires 2026-12-31
"""


def test_markdown_comment(report: Report) -> None:
    assert render(report, "markdown").splitlines() == EXPECTED.splitlines()


def test_escaping_keeps_one_cell_and_no_code_span() -> None:
    assert escape("a | b `c` <d> *e* [f](g) \\h\nnext") == (
        "a \\| b \\`c\\` &lt;d&gt; \\*e\\* \\[f\\](g) \\\\h<br>next"
    )
    assert code("odd|path") == "`odd\\|path`"
    assert code("tick`name") == "`` tick`name ``"


def test_links_when_a_base_is_given(report: Report) -> None:
    options = RenderOptions(link_base="https://github.com/org/repo/blob/abc123/")
    lines = render(report, "markdown", options).splitlines()
    assert (
        "| ❌ error | `scaling/keda-max-within-gpu-limit` | `ScaledObject/llm/vllm spec.maxReplicaCount` "
        "| [`overlays/prod/patch-keda.yaml:12`](https://github.com/org/repo/blob/abc123/overlays/prod/patch-keda.yaml#L12) "
        "| KEDA may ask for 10 replicas but NodePool gpu allows 4 GPUs. |"
    ) in lines
    assert (
        "| ℹ️ info | `gpu/awq-on-ampere` | `Deployment/llm/vllm spec.template.spec.containers[0].args` "
        "| [`base/vllm/deployment.yaml`](https://github.com/org/repo/blob/abc123/base/vllm/deployment.yaml) "
        "| NodePool gpu may launch g4dn (Turing); AWQ needs Ampere. |"
    ) in lines


def _many(count: int) -> list[Finding]:
    return [
        Finding(
            rule_id="schema/unknown-field",
            severity=Severity.ERROR,
            message=f"unknown field f{i:02d}",
            overlay="dev",
            path=("spec", f"f{i:02d}"),
            location=SourceLocation("overlays/dev/kustomization.yaml", i + 1),
        )
        for i in range(count)
    ]


def test_long_reports_are_truncated_with_a_count() -> None:
    report = make_report(_many(7), overlays=["dev"])
    lines = render(report, "markdown", RenderOptions(max_findings=3)).splitlines()
    rows = [line for line in lines if line.startswith("| ❌")]
    assert rows == [
        f"| ❌ error | `schema/unknown-field` | `(whole overlay) spec.f{i:02d}` "
        f"| `overlays/dev/kustomization.yaml:{i + 1}` | unknown field f{i:02d} |"
        for i in range(3)
    ]
    assert lines[-1] == "_…and 4 more findings not shown; the job log lists them all._"
    assert lines[2] == (
        "**7 errors**, 0 warnings, 0 info; 14 resources in 1 overlay checked (dev). Fails at **warning** or above."
    )


def test_empty_report_is_a_clean_pass(empty_report: Report) -> None:
    assert render(empty_report, "markdown") == (
        "## ✅ Policy gate passed\n\nNo findings; 14 resources in 2 overlays checked (dev, prod).\n"
    )
