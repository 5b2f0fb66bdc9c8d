from __future__ import annotations

import pytest
from report_samples import build_findings, make_report

from tools.validate.model import Report


@pytest.fixture
def report() -> Report:
    return make_report(build_findings())


@pytest.fixture
def empty_report() -> Report:
    return make_report([])
