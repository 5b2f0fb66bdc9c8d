"""Polling until a condition holds, with a deadline and a message that says what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """The condition did not hold before the deadline."""


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `condition` until it returns a truthy value and return that value.

    Raises WaitTimeoutError naming `what` (and the last value seen) after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:g} s waiting for {what} (last value: {last!r})")
        time.sleep(interval)
