"""How the operator writes status: one read-change-write for every kind, one way to set a
condition, one rule for a spec the operator cannot use.

`update_status` reads the object, lets `compute` derive the new status from it and writes it
carrying the resourceVersion it read (assay.crds.contracts.optimistic.update): two writers
computing from different reads never overwrite the newer status with the older one; on a
conflict the status is computed again from a fresh read. Kopf's own `patch.status` inside a
handler is the other way a status is written, for fields that only that handler writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import kopf

from assay.crds.contracts import optimistic
from assay.crds.runs import upgraded_runs

from . import kube

PLURALS = {
    "Monitor": "monitors",
    "TestSuite": "testsuites",
    "LoadTest": "loadtests",
    "Schedule": "schedules",
    "ClientCredential": "clientcredentials",
}
INVALID_SPEC = "InvalidSpec"
UPGRADED_KINDS = ("Monitor", "TestSuite")
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Written:
    """A status write: the object as it was read, its status then, and the fields written
    (each replaced whole; a field set to None was removed)."""

    obj: dict
    before: dict
    after: dict


def update_status(
    kind: str,
    namespace: str,
    name: str,
    compute: Callable[[dict], dict | None],
    *,
    first: dict | None = None,
    attempts: int = optimistic.ATTEMPTS,
) -> Written | None:
    """Write the status `compute(object)` returns, onto the object it was computed from; None
    when the object does not exist or `compute` returned None (nothing to write). `first` is
    the object as the caller already has it, saving the first read. After `attempts`
    conflicts the last one (kube.Conflict) is raised."""
    plural = PLURALS[kind]
    reads = [first] if first is not None else []

    def read() -> dict | None:
        return reads.pop() if reads else kube.read_custom(plural, namespace, name)

    def change(obj: dict | None) -> dict | None:
        if obj is None:
            return None
        # Runs an older operator recorded are written back in today's record with whatever
        # this write changes: the API server would refuse any status write while they remain.
        stored = obj.get("status") or {}
        carried = upgraded_runs(stored) if kind in UPGRADED_KINDS else {}
        status = compute({**obj, "status": {**stored, **carried}} if carried else obj)
        if status is None and not carried:
            return None
        return {**carried, **(status or {})}

    def write(obj: dict, status: dict) -> Written:
        before = obj.get("status") or {}
        kube.patch_status(plural, namespace, name, replacing(before, status), obj["metadata"].get("resourceVersion"))
        return Written(obj, before, status)

    return optimistic.update(read, change, write, attempts=attempts)


def replacing(before: dict, after: dict) -> dict:
    """`after`'s fields as a merge patch that replaces each of them whole. A merge patch merges
    objects key by key, so the keys of an object in `before` that its new value lacks go as
    null: else a run that has not finished would keep the result of the run before it."""

    def whole(old, new):
        if not isinstance(old, dict) or not isinstance(new, dict):
            return new
        return {**{k: None for k in old if k not in new}, **{k: whole(old.get(k), v) for k, v in new.items()}}

    return {k: whole(before.get(k), v) for k, v in after.items()}


def set_condition(
    conditions: list[dict] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str | None,
    generation: int | None = None,
    since: str | None = None,
) -> list[dict]:
    """`conditions` with the one of `type_` set, as metav1.Condition: its lastTransitionTime
    changes only when its status does (to `now`); `since` instead gives a transition time
    derived from the world (a run's end), so a rebuilt status is the same status. The
    condition goes last, after the others in their order."""
    others = [c for c in conditions or [] if c.get("type") != type_]
    previous = next((c for c in conditions or [] if c.get("type") == type_), None)
    if since is None:
        since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else now
    condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": short(message),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    return [*others, {k: v for k, v in condition.items() if v is not None}]


def short(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def reject_spec(kind: str, namespace: str, name: str, condition: str, message: str, now: str) -> kopf.PermanentError:
    """A spec the operator cannot use, the same way for every kind: `condition` False with
    reason InvalidSpec and `message` on the object, then the error the handler raises to
    stop (retrying a bad spec cannot fix it; a changed spec is a new event). Monitors and
    TestSuites, whose status is rebuilt as a whole (runs.reconcile_status), say it in their
    RunRequest condition the same way (RequestState.error_reason)."""

    def compute(obj: dict) -> dict | None:
        current = obj.get("status") or {}
        conditions = set_condition(
            current.get("conditions"),
            condition,
            "False",
            INVALID_SPEC,
            message,
            now=now,
            generation=obj["metadata"].get("generation"),
        )
        return None if conditions == current.get("conditions") else {"conditions": conditions}

    update_status(kind, namespace, name, compute)
    return kopf.PermanentError(message)
