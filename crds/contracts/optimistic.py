"""Read-change-write with optimistic concurrency, the one loop every writer of a shared
Kubernetes object uses.

The write carries the resourceVersion it read, so a concurrent writer makes the API server
answer 409 Conflict instead of being overwritten; the loop then reads again and recomputes
the change on the fresh object. The callables are the caller's own I/O, so the operator
(sync client) and the gateway use the same rule."""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

Obj = TypeVar("Obj")
Change = TypeVar("Change")
Written = TypeVar("Written")

ATTEMPTS = 8


def is_conflict(exc: BaseException) -> bool:
    """A 409 from the Kubernetes client (ApiException and its async twin both carry `status`)."""
    return getattr(exc, "status", None) == 409


def update(
    read: Callable[[], Obj],
    compute: Callable[[Obj], Optional[Change]],
    write: Callable[[Obj, Change], Written],
    *,
    attempts: int = ATTEMPTS,
    conflict: Callable[[BaseException], bool] = is_conflict,
) -> Optional[Written]:
    """Read the object, compute the change from it, write it; again from the read on a
    conflict. `compute` returns None when there is nothing to write (the result is then
    None); `write` gets the object it was computed from, to take its resourceVersion.

    After `attempts` conflicts the last one is raised: under that much contention the caller
    (a Kopf handler's retry, a client's retry) is the right place to wait."""
    for attempt in range(attempts):
        current = read()
        change = compute(current)
        if change is None:
            return None
        try:
            return write(current, change)
        except Exception as exc:
            if not conflict(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises
