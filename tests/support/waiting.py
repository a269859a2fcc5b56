"""Polling until something holds, for every fixture that waits on a cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
):
    """Poll `check` until it returns something truthy and return that; on timeout fail with
    `what`, the last value and, when given, `describe()` (the state that explains the wait)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    message = f"timed out after {timeout}s waiting for {what} (last: {last!r})"
    raise AssertionError(f"{message}\n{describe()}" if describe else message)
