"""LoadTests as the REST APIs see them: numbered per project, described, copied and re-run.

Numbers
    XTC addresses a load test by a number that is unique in its project and never reused. The
    number of a LoadTest is `store.number_for(<namespace>, "loadtest", <uid>)`, allocated the
    first time the gateway sees the LoadTest (a list, a details call, a copy). Before
    allocating, the namespace's LoadTests are sorted by creation time, so numbers follow
    creation order. The uid, not the name, is the key: a LoadTest deleted and created again
    under the same name is a new load test with a new number.

Copies (XTC runCopy)
    A LoadTest runs once; running it again means copying it. A copy is named after the
    original and its own number (`checkout-7`), so the number has to exist before the object
    does, when there is no uid to allocate it for. The copy therefore reserves its number under
    a reservation key (`copy:<uuid4>`), records `reservation -> {number, name}`, and carries
    the reservation in the annotation `assay.dev/number-reservation`; the first time the gateway
    sees the object it binds the reservation to the object's uid. A LoadTest whose annotation
    names a reservation that is not recorded for its name (a hand-made clone of a copy) or is
    bound to another uid (the copy deleted and re-applied) gets an ordinary uid number. A copy
    whose creation fails leaves its number unused: numbers are never reused, so that is a gap,
    not a collision.

Everything here is plain dicts in (as the API server returns them) and plain values out; the
routers shape them into each family's wire format.
"""

from __future__ import annotations

import copy as copy_module
import datetime as dt
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any, Optional

from kubernetes.client.rest import ApiException

from assay.crds.runrequest import fit_name
from assay.crds.times import iso, parse_time

from . import Conflict, NotFound

PLURAL = "loadtests"
COUNTER = "loadtest"
RESERVATIONS = "loadtest-number-reservations"
"""Store collection: reservation key -> {"number", "name", "uid"} of copies made by the gateway."""

LABEL_NUMBER = "assay.dev/loadtest-number"
LABEL_COPIED_FROM = "assay.dev/copied-from-number"
ANNOTATION_RESERVATION = "assay.dev/number-reservation"
ANNOTATION_ORIGINAL = "assay.dev/original-name"
ANNOTATION_COPIED_FROM = "assay.dev/copied-from"
OWN_PREFIX = "assay.dev/"


def epoch_ms(value: Any) -> Optional[int]:
    """A timestamp as epoch milliseconds (Loadmill's timestamps), or None."""
    moment = parse_time(value)
    return None if moment is None else int(moment.timestamp() * 1000)


def creation_order(items: list[dict]) -> list[dict]:
    """LoadTests oldest first: creation time (second precision), then name, then uid."""

    def key(item: dict) -> tuple:
        meta = item.get("metadata") or {}
        return (str(meta.get("creationTimestamp") or ""), meta.get("name") or "", meta.get("uid") or "")

    return sorted(items, key=key)


@dataclass(frozen=True)
class NumberedLoadTest:
    number: int
    resource: dict

    @property
    def meta(self) -> dict:
        return self.resource.get("metadata") or {}

    @property
    def name(self) -> str:
        return self.meta.get("name", "")

    @property
    def uid(self) -> str:
        return self.meta.get("uid", "")

    @property
    def spec(self) -> dict:
        return self.resource.get("spec") or {}

    @property
    def status(self) -> dict:
        return self.resource.get("status") or {}

    @property
    def copied_from(self) -> Optional[int]:
        value = (self.meta.get("labels") or {}).get(LABEL_COPIED_FROM)
        return int(value) if value and value.isdigit() else None


def copy_root_name(source: dict) -> str:
    """The name copies are named after: the original's, also for a copy of a copy."""
    meta = source.get("metadata") or {}
    return (meta.get("annotations") or {}).get(ANNOTATION_ORIGINAL) or meta["name"]


def copy_name(root: str, number: int, attempt: int = 0) -> str:
    suffix = str(number) if attempt == 0 else f"{number}-{uuid.uuid4().hex[:4]}"
    return fit_name(root, suffix)


def build_copy(source: dict, number: int, source_number: int, reservation: str, name: str) -> dict:
    """The LoadTest a runCopy creates: the source's spec unchanged, the source's own labels
    (not Assay's), its number and the source's number as labels, and where it came from as
    annotations. The source's annotations are not copied: they describe the source (e.g.
    kubectl's last-applied configuration), not the copy."""
    meta = source.get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(OWN_PREFIX)}
    labels[LABEL_NUMBER] = str(number)
    labels[LABEL_COPIED_FROM] = str(source_number)
    return {
        "apiVersion": source.get("apiVersion", "assay.dev/v1alpha1"),
        "kind": "LoadTest",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": {
                ANNOTATION_ORIGINAL: copy_root_name(source),
                ANNOTATION_COPIED_FROM: meta.get("name", ""),
                ANNOTATION_RESERVATION: reservation,
            },
        },
        # A copy of an aborted load test runs: it is a new run, not the stopped one.
        "spec": {k: v for k, v in copy_module.deepcopy(source.get("spec") or {}).items() if k != "abort"},
    }


# --- run figures ----------------------------------------------------------------------------------

SUMMARY_KEYS = (
    "requests",
    "failures",
    "errorRate",
    "rps",
    "minMs",
    "avgMs",
    "maxMs",
    "p50Ms",
    "p90Ms",
    "p95Ms",
    "p99Ms",
)
SUMMARY_ALIASES = {"errorRatePct": "errorRate", "throughputRps": "rps", "meanMs": "avgMs"}
"""The ingest's run summary (store/results.py run_summary) names some figures differently."""


def _snake_to_camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def run_figures(status_summary: Optional[dict], record_summary: Optional[dict]) -> dict:
    """The run's summary figures: those the ingest recorded for the run (merged over all
    shards, from the full metrics) win over the LoadTest status' (from termination messages).
    Keys camelCase, numbers only; the error rate is derived when it is missing."""
    figures: dict = {}
    for source in (status_summary or {}, record_summary or {}):
        for key, value in source.items():
            key = _snake_to_camel(key)
            key = SUMMARY_ALIASES.get(key, key)
            if key in SUMMARY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                figures[key] = value
    requests = figures.get("requests")
    if "errorRate" not in figures and requests:
        figures["errorRate"] = round(100.0 * figures.get("failures", 0) / requests, 3)
    return figures


def elapsed_seconds(status: dict, now: Optional[dt.datetime] = None) -> Optional[float]:
    start = parse_time(status.get("startTime"))
    if start is None:
        return None
    end = parse_time(status.get("completionTime")) or now or dt.datetime.now(dt.timezone.utc)
    return max(round((end - start).total_seconds(), 3), 0.0)


@dataclass(frozen=True)
class Archive:
    kind: str
    """"result" | "report"."""
    number: int
    created_at: Optional[str]
    size: Optional[int]
    sha256: Optional[str]
    path: Any = None


# --- the service ------------------------------------------------------------------------------------


class LoadTestService:
    """Numbering, reading and copying LoadTests in one namespace at a time."""

    def __init__(self, kube, store):
        self.kube = kube
        self.store = store
        # (namespace, uid) -> number. Numbers never change once allocated, so a cache cannot
        # go stale; it only saves the store a query per LoadTest per request.
        self._numbers: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # numbers

    def _number_of(self, namespace: str, item: dict) -> int:
        meta = item.get("metadata") or {}
        uid = meta["uid"]
        cached = self._numbers.get((namespace, uid))
        if cached is not None:
            return cached
        number = self._reserved_number(namespace, meta)
        if number is None:
            number = int(self.store.number_for(namespace, COUNTER, uid))
        self._numbers[(namespace, uid)] = number
        return number

    def _reserved_number(self, namespace: str, meta: dict) -> Optional[int]:
        reservation = (meta.get("annotations") or {}).get(ANNOTATION_RESERVATION)
        if not reservation:
            return None
        record = self.store.get_record(RESERVATIONS, reservation)
        if not record or record.get("namespace") != namespace or record.get("name") != meta.get("name"):
            return None
        bound = record.get("uid")
        if bound is None:
            self.store.put_record(RESERVATIONS, reservation, {**record, "uid": meta["uid"]}, project=namespace)
        elif bound != meta["uid"]:
            return None
        return int(record["number"])

    def numbered(self, namespace: str, items: list[dict]) -> list[NumberedLoadTest]:
        """`items` with their numbers, allocating in creation order; sorted by number."""
        with self._lock:
            out = [NumberedLoadTest(self._number_of(namespace, item), item) for item in creation_order(items)]
        return sorted(out, key=lambda n: n.number)

    def list(self, namespace: str) -> list[NumberedLoadTest]:
        return self.numbered(namespace, self.kube.list(PLURAL, namespace))

    def get(self, namespace: str, number: int) -> NumberedLoadTest:
        for item in self.list(namespace):
            if item.number == number:
                return item
        raise NotFound(f"no load test {number} in this project")

    # copies

    def run_copy(self, namespace: str, number: int) -> tuple[NumberedLoadTest, NumberedLoadTest]:
        """Copy load test `number` under the next number; the operator runs the copy as it runs
        any new LoadTest. Returns (source, copy)."""
        source = self.get(namespace, number)  # numbers every LoadTest seen so far first
        reservation = f"copy:{uuid.uuid4().hex}"
        new_number = int(self.store.number_for(namespace, COUNTER, reservation))
        root = copy_root_name(source.resource)
        for attempt in range(3):
            name = copy_name(root, new_number, attempt)
            self.store.put_record(
                RESERVATIONS,
                reservation,
                {"number": new_number, "name": name, "namespace": namespace, "source": source.uid},
                project=namespace,
            )
            body = build_copy(source.resource, new_number, source.number, reservation, name)
            try:
                created = self.kube.create(PLURAL, namespace, body)
            except ApiException as exc:
                if exc.status == 409:  # a LoadTest of that name exists already (not ours): rename
                    continue
                raise
            with self._lock:
                number_now = self._number_of(namespace, created)
            return source, NumberedLoadTest(number_now, created)
        raise Conflict(f"could not find a free name for the copy of load test {number}; try again")

    def abort(self, namespace: str, number: int) -> NumberedLoadTest:
        """Set load test `number`'s `spec.abort`: its shards stop at their next progress report
        and the run ends Aborted with what it measured (api/routers/ingest.py tells them)."""
        item = self.get(namespace, number)
        if (item.resource.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            raise Conflict(f"load test {number} has finished already")
        patched = self.kube.patch(PLURAL, namespace, item.resource["metadata"]["name"], {"spec": {"abort": True}})
        return NumberedLoadTest(number, patched)

    # archives and run records

    def archives(self, namespace: str, item: NumberedLoadTest) -> list[Archive]:
        out = []
        # With the project, the query uses the archives' (project, loadtest_uid, ...) index.
        for record in self.store.list_archives(project=namespace, loadtest_uid=item.uid):
            out.append(
                Archive(
                    kind=record.kind,
                    number=int(record.number),
                    created_at=iso(record.created_at),
                    size=record.size,
                    sha256=record.sha256,
                    path=record.path,
                )
            )
        return sorted(out, key=lambda a: (a.kind, a.number))

    def archive(self, namespace: str, item: NumberedLoadTest, kind: str, number: int):
        record = self.store.get_archive(namespace, item.uid, kind, number)
        try:
            # The file a download serves: in S3, a local copy of the object.
            path = None if record is None else self.store.local_file(record)
        except FileNotFoundError:
            path = None
        if record is None or path is None or not _exists(path):
            raise NotFound(f"no {kind} archive {number} for load test {item.number}")
        return replace(record, path=path)

    def run_record(self, item: NumberedLoadTest):
        run_id = item.status.get("runId")
        return self.store.get_run(run_id) if run_id else None


def _exists(path) -> bool:
    try:
        from pathlib import Path

        return Path(path).is_file()
    except OSError:
        return False
