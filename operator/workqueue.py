"""A work queue of namespaces: coalesced, level-based passes, one namespace at a time.

Handlers ask for a pass instead of running it: a burst of changes (1,000 Monitors applied at
once) then costs one pass per namespace, not one per object."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("assay.operator.workqueue")


class NamespaceQueue:
    """Runs `work(namespace)` for namespaces that asked for it, one pass per namespace at a
    time, on a thread of its own: a burst of requests within `delay` is one pass, and a
    failed pass is retried after `retry` seconds. `what` names the work in logs."""

    def __init__(self, work: Callable[[str], object], what: str, delay: float = 1.0, retry: float = 10.0):
        self.work, self.what = work, what
        self.delay, self.retry = delay, retry
        self._due: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, namespace: str, *, unless_within: float | None = None) -> None:
        """Ask for a pass over `namespace`; with `unless_within`, only if none ran for that long."""
        with self._wake:
            if unless_within is not None and time.monotonic() - self._last.get(namespace, -1e9) < unless_within:
                return
            due = time.monotonic() + self.delay
            self._due[namespace] = min(self._due.get(namespace, due), due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.what.replace(" ", "-"), daemon=True)
                self._thread.start()
            self._wake.notify()

    def _next(self) -> str:
        with self._wake:
            while True:
                now = time.monotonic()
                ready = [ns for ns, due in self._due.items() if due <= now]
                if ready:
                    namespace = min(ready, key=self._due.__getitem__)
                    del self._due[namespace]
                    self._last[namespace] = now
                    return namespace
                self._wake.wait(timeout=min(self._due.values(), default=now + 60) - now)

    def _run(self) -> None:
        while True:
            namespace = self._next()
            try:
                self.work(namespace)
            except Exception as exc:  # noqa: BLE001  (the queue outlives any one failure)
                log.warning(
                    f"{namespace}: {self.what} not reconciled ({type(exc).__name__}: {exc}); "
                    f"retrying in {self.retry:.0f}s"
                )
                with self._wake:
                    self._due.setdefault(namespace, time.monotonic() + self.retry)
                    self._wake.notify()
