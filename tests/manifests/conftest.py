from __future__ import annotations

import pytest
from rendered_manifests import RENDER_TARGETS, Rendered, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    """Each render target built once per session."""
    return {target: render(target) for target in RENDER_TARGETS}
