"""The rule registry: every rule of every family, listed explicitly."""

from __future__ import annotations

from tools.validate.rules.base import Registry


def default_registry() -> Registry:
    # Families are imported here, not discovered: adding a family means adding it to this list.
    from tools.validate.rules import (
        aws,
        gitops,
        gpu,
        meta,
        observability,
        references,
        scaling,
        schema,
        security,
        spot,
    )

    return Registry(
        [
            *scaling.RULES,
            *spot.RULES,
            *gpu.RULES,
            *security.RULES,
            *gitops.RULES,
            *references.RULES,
            *observability.RULES,
            *aws.RULES,
            *schema.RULES,
            *meta.RULES,
        ]
    )
