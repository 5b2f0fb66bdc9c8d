"""`gate`: validate, simulate, diff."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    raise SystemExit("gate: not built yet")
