"""Kubernetes resource quantities (`500m`, `16Gi`, `1e3`), parsed by the Kubernetes Python client's own
`parse_quantity`, without importing the client.

`import kubernetes.utils` runs the `kubernetes` package's `__init__`, which imports the whole API
client (every model, urllib3, requests, ...): about half a second, most of the gate's start-up. The
parser is a module of its own in that package (`kubernetes/utils/quantity.py`, only `decimal`
imported), so it is loaded from its file alone. When that file is not where the package puts it, the
ordinary import is used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

_MODULE_NAME = "tools.validate._kubernetes_quantity"


@cache
def _parser() -> Callable[[Any], Decimal]:
    spec = importlib.util.find_spec("kubernetes")  # finds the package without running its __init__
    locations = spec.submodule_search_locations if spec is not None else None
    file = Path(next(iter(locations))) / "utils" / "quantity.py" if locations else None
    if file is not None and file.is_file():
        module_spec = importlib.util.spec_from_file_location(_MODULE_NAME, file)
        if module_spec is not None and module_spec.loader is not None:
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            parse: Callable[[Any], Decimal] = module.parse_quantity
            return parse
    from kubernetes.utils import parse_quantity as imported

    return imported


def parse_quantity(quantity: Any) -> Decimal:
    """The quantity as a `Decimal`; `ValueError` when it is not one (as the client raises)."""
    return _parser()(quantity)
