"""Validators shared by the schema tests: building one loads the Kubernetes schemas (and CRDs)."""

from __future__ import annotations

import pytest
from schema_helpers import upstream_crds

from tools.validate.schema import SchemaValidator


@pytest.fixture(scope="session")
def validator() -> SchemaValidator:
    """The project's schemas and Kubernetes' default version."""
    return SchemaValidator()


@pytest.fixture(scope="session")
def upstream() -> SchemaValidator:
    """The upstream CRDs kept beside the checkout instead of the project's schemas."""
    return SchemaValidator(crd_dirs=[upstream_crds()])
